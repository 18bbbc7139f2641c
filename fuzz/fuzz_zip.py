"""Zip member reading: the archive listing (zipfs.member_names) and sources.read_file of
every member, as csconv reads the official archives."""

import os
import tempfile

from common import CsconvError, run, sources

from csconv.storage import zipfs

PATH = os.path.join(tempfile.mkdtemp(prefix="csconv-fuzz-zip-"), "gtFine_trainvaltest.zip")


def test_one_input(data: bytes) -> None:
    with open(PATH, "wb") as f:
        f.write(data)
    for archive in zipfs._open_archives.values():
        archive.close()
    zipfs._open_archives.clear()
    try:
        for name in zipfs.member_names(PATH)[:16]:
            sources.read_file(sources.Location(PATH, name))
    except CsconvError:
        pass


if __name__ == "__main__":
    run(test_one_input)
