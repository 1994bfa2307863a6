"""core.digest: SHA-256 of bytes and of files read in chunks."""

from __future__ import annotations

import hashlib

from facedeblur_jax.core.digest import sha256_bytes, sha256_file


def test_a_file_over_several_chunks_hashes_as_its_bytes(tmp_path):
    data = bytes(range(256)) * (3 * 4096 + 7)  # about 3 MiB: several 1 MiB reads
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    expected = hashlib.sha256(data).hexdigest()
    assert sha256_file(path) == sha256_bytes(data) == expected
    assert sha256_bytes(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
