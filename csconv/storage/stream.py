"""The write-only stream every shard writer hands a sink, wherever the shard goes."""

from __future__ import annotations

import hashlib

from crc32c import crc32c

from ..crc import crc32c_combine


class ShardStream:
    """A sink writes a shard through this file-object surface; the subclass stages the
    bytes (`_stage`) and publishes them at commit(). The running CRC32C, which the
    manifest records, is kept here."""

    size: int
    _crc32c: int

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        pass

    def close(self) -> None:
        """Writers may close their stream; the shard stays unpublished until commit()."""

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        self._crc32c = crc32c(view, self._crc32c)
        self._stage(view)
        return view.nbytes

    def writelines(self, parts) -> None:
        for part in parts:
            self.write(part)

    def writelines_with_crc32c(self, parts, crc: int) -> None:
        """writelines() for a caller that already has the CRC32C of the parts end to end."""
        length = 0
        for part in parts:
            view = memoryview(part).cast("B")
            self._stage(view)
            length += view.nbytes
        self._crc32c = crc32c_combine(self._crc32c, crc, length)

    def _stage(self, view: memoryview) -> None:
        raise NotImplementedError


def write_whole(shard, chunks) -> None:
    """Write every chunk into a freshly opened shard and publish it; on any failure,
    nothing is published."""
    try:
        for chunk in chunks:
            shard.write(chunk)
        shard.commit()
    except BaseException:
        shard.abort()
        raise


def digests_of(chunks, names) -> dict[str, str]:
    """The named checksums ("crc32c", "sha256") of the bytes of `chunks`, as the manifest records them."""
    crc, sha256 = 0, hashlib.sha256() if "sha256" in names else None
    for chunk in chunks:
        crc = crc32c(chunk, crc)
        if sha256 is not None:
            sha256.update(chunk)
    found = {"crc32c": f"{crc:08x}"}
    if sha256 is not None:
        found["sha256"] = sha256.hexdigest()
    return {name: found[name] for name in names}
