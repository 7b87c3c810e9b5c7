"""Where pair tables come from: local files (jsonl / json / parquet / csv, optionally gzip) and hub datasets,
read into DataFrames; anything unreadable is a :class:`~encore.errors.DataError` naming the file and the fix.

Texts stay texts: JSON keeps the types its writer gave (``"chosen": "1.50"`` is the string "1.50", never 1.5), a CSV
cell of a text column is read as written ("3" stays "3", never 3 or 3.0), and a text column a parquet writer stored as
numbers is turned into strings. Numbers are parsed where a number is meant (a rating's ``value``, a label)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import pandas as pd

from encore.errors import DataError


def read_table(path: str | Path, field: str = "data.path", hub_id: str | None = None,
               text: Iterable[str] = ()) -> pd.DataFrame:
    """Read jsonl / json / parquet / csv (optionally ``.gz``) into a DataFrame. What cannot be read as such (empty,
    not UTF-8, compressed but not named .gz or the reverse, malformed) is a :class:`DataError` naming the file and
    the fix, never a parser's traceback. ``field`` is the setting named in messages (``data.path``, ``rater.path``);
    ``hub_id``: the hub dataset the option reads without a file (a missing file's message offers it); ``text``: the
    columns that hold texts (prompts, responses, rule names, ids), read as strings from every format (:func:`as_text`)."""
    text = list(text)
    path = Path(path).expanduser()
    if path.is_symlink() and not path.exists():
        try:
            path.resolve(strict=True)
        except RuntimeError:  # Python 3.11: a symlink loop
            raise DataError(f"{field}={str(path)!r} is a symbolic link that loops back on itself. Fix: point the "
                            "link (or the setting) at the real file") from None
        except OSError:
            raise DataError(f"{field}={str(path)!r} is a symbolic link to a file that does not exist "
                            f"({path.readlink()}). Fix: point the link at the real file") from None
    if not path.exists():
        hub = f", or set {field}=null to read {hub_id} from the hub" if hub_id else ""
        raise DataError(f"{field}={str(path)!r} does not exist. Fix: give an existing file{hub}")
    suffixes = [s for s in path.suffixes if s != ".gz"]
    kind = suffixes[-1] if suffixes else ""
    if kind not in (".jsonl", ".json", ".parquet", ".csv"):
        raise DataError(f"{field}={str(path)!r}: unknown format {kind!r}; use .jsonl, .json, .parquet or .csv (optionally .gz)")
    if path.is_dir():
        if kind != ".parquet":
            raise DataError(f"{field}={str(path)!r} is a directory. Fix: point {field} at a file")
        return as_text(pd.read_parquet(path), text)  # a partitioned parquet dataset
    if path.stat().st_size == 0:
        raise DataError(f"{field}={str(path)!r} is an empty file. Fix: point {field} at the right file")
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    named_gz = path.suffix == ".gz"
    if kind != ".parquet" and gz != named_gz:
        fix = f"rename it to {path.name}.gz" if gz else f"rename it to {path.stem} (drop .gz) or compress it with gzip"
        raise DataError(f"{field}={str(path)!r} is {'gzip-compressed' if gz else 'not gzip-compressed'} but "
                        f"{'not ' if gz else ''}named .gz. Fix: {fix}")
    compression = "gzip" if named_gz else None
    try:
        # precise_float: pandas' default JSON number parser is off by a unit in the last place for most decimals
        # (0.42332644897257554 -> ...7557); the exact one returns the float the writer held (tests/test_bins.py).
        # dtype=False: the writer's types as they are (pandas' default turns the string "1.50" into 1.5, "3" into 3)
        if kind == ".jsonl":
            df = pd.read_json(path, lines=True, compression=compression, encoding="utf-8-sig", precise_float=True,
                              dtype=False)
        elif kind == ".json":
            df = pd.read_json(path, compression=compression, encoding="utf-8-sig", precise_float=True, dtype=False)
        elif kind == ".parquet":
            df = pd.read_parquet(path)
        else:  # a CSV cell has no type: a text column is read as written
            df = pd.read_csv(path, compression=compression, keep_default_na=False, encoding="utf-8-sig",
                             dtype={c: str for c in text})
    except UnicodeDecodeError as e:
        raise DataError(f"{field}={str(path)!r} is not UTF-8 text ({e.reason} at byte {e.start}). Fix: re-encode "
                        f"it, e.g. iconv -f latin1 -t utf-8 {path.name} > utf8-{path.name}") from None
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"{field}={str(path)!r} cannot be read as {kind[1:]}: {str(e).splitlines()[0][:200]}. "
                        "Fix: check the file's format against its name") from None
    if df.empty:
        raise DataError(f"{field}={str(path)!r} holds no rows. Fix: point {field} at the right file")
    return as_text(df, text)


def as_text(df: pd.DataFrame, text: Iterable[str]) -> pd.DataFrame:
    """``df`` with each of the ``text`` columns it has as strings: a value a writer stored as a number (a JSON
    ``3``, a parquet int column) becomes its text ("3"); missing cells (None, NaN) stay missing."""
    fix = {c: df[c].map(lambda v: v if isinstance(v, str) or v is None or (isinstance(v, float) and v != v) else str(v))
           for c in text if c in df.columns and not all(isinstance(v, str) for v in df[c])}
    return df.assign(**fix) if fix else df


def hub_table(hub_id: str, split: str, name: str | None = None, data_dir: str | None = None, revision: str | None = None) -> pd.DataFrame:
    import datasets  # imported here: loading is slow and only the hub path needs it

    ds = datasets.load_dataset(hub_id, name=name, data_dir=data_dir, split=split, revision=revision)
    return ds.to_pandas()
