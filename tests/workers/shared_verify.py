"""One rank of tests/test_verification.py's gloo test: started twice by torchrun with ACCELERATE_USE_CPU=true. Rank 0
writes a model folder with its checksum list; both ranks verify it together (each hashes its share), print what they
hashed and the gather group's timeout; then rank 0 flips a byte of a file rank 1 hashes and both ask
``reusable``, which must find it damaged on every rank."""

import json
import sys
from pathlib import Path

import torch.distributed as dist

from encore.cache import integrity
from encore.rm.model import reusable
from encore.scale import distributed as dist_mod
from encore.scale.distributed import launch_state, shared_hashes

if __name__ == "__main__":
    d = Path(sys.argv[1])
    state = launch_state()
    if state.is_main_process:
        d.mkdir(parents=True)
        for name, mb in (("a.bin", 4), ("b.bin", 2), ("c.bin", 1), ("sub/d.bin", 1)):
            (d / name).parent.mkdir(exist_ok=True)
            (d / name).write_bytes(bytes(range(256)) * (4096 * mb) + name.encode())
        (d / integrity.SUMS).write_text(json.dumps({"files": integrity.checksums(d, skip=(integrity.SUMS,))}))
    state.wait_for_everyone()
    hashed, timeouts = [], []
    real_hash, real_group = dist_mod.hash_files, dist.new_group
    dist_mod.hash_files = lambda folder, rels: (hashed.extend(rels), real_hash(folder, rels))[1]
    dist.new_group = lambda *a, **k: (timeouts.append(k["timeout"].total_seconds()), real_group(*a, **k))[1]
    files, _ = integrity.recorded(d)
    got = shared_hashes(state, d, files)
    same = got == {rel: w["sha256"] for rel, w in files.items()}
    state.wait_for_everyone()
    if state.is_main_process:
        victim = d / integrity.share(files, 1, 2)[0]
        data = bytearray(victim.read_bytes())
        data[100] ^= 1
        victim.write_bytes(bytes(data))
    state.wait_for_everyone()
    hashed_before = list(hashed)
    ok = reusable(d)
    print(json.dumps({"rank": state.process_index, "hashed": hashed_before, "same": same, "timeouts": timeouts,
                      "reusable_after_flip": ok, "moved": not d.exists()}), flush=True)
    state.wait_for_everyone()  # neither rank leaves while the other still gathers
