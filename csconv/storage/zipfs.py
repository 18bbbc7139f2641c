"""Members of the official zip archives, read in place: from a local file, or from an
object in a bucket through a read-ahead cache (remote.open_archive), never unpacked.

One open handle per archive and process: a handle inherited across fork shares its file
offset (or its HTTP session) with the parent, so a child opens its own.
"""

from __future__ import annotations

import os
import zipfile
import zlib

from ..core.errors import InputError
from . import remote

# The most a member may declare it inflates to, by kind, refused before reading: a zip
# member can expand a thousandfold. Real Cityscapes PNGs are at most about 3 MB, polygons
# JSONs 300 KB; the prepared panoptic JSON of a split is tens of MB, hence the wide rest.
MAX_MEMBER_BYTES = {".png": 64 * 2**20, "_polygons.json": 32 * 2**20}
MAX_OTHER_MEMBER_BYTES = 1024 * 2**20
SEPARATOR = "::"  # how a member is named in messages: <archive>::<member>

# Zip compression methods Python cannot decompress, by the number the archive records.
_COMPRESSION_NAMES = {9: "Deflate64 (method 9)", 6: "Implode (method 6)", 1: "Shrink (method 1)", 98: "PPMd (method 98)"}

_open_archives: dict[tuple[int, str], zipfile.ZipFile] = {}


def member_limit(member: str) -> int:
    return next((limit for suffix, limit in MAX_MEMBER_BYTES.items() if member.endswith(suffix)),
                MAX_OTHER_MEMBER_BYTES)


def member_names(archive_path: str) -> list[str]:
    """The archive's member names; an InputError when one appears twice.

    Appending archivers leave two members of one name; reading by name would give
    one of them, and listing would convert that frame twice.
    """
    names = archive(archive_path).namelist()
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise InputError(
                f"{archive_path}{SEPARATOR}{name}",
                "the archive holds two members of this name (left by an appending archiver?); "
                "re-create the archive with one copy",
            )
        seen.add(name)
    return names


def archive(path: str) -> zipfile.ZipFile:
    key = (os.getpid(), path)
    if key not in _open_archives:
        try:
            _open_archives[key] = zipfile.ZipFile(remote.open_archive(path) if remote.is_url(path) else path)
        except remote.StorageError as error:
            raise InputError(path, str(error).removeprefix(f"{path}: ")) from None
        except FileNotFoundError:
            raise InputError(path, "archive not found") from None
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
            raise InputError(path, f"not a readable zip archive, truncated or damaged ({error})") from None
        except NotImplementedError as error:  # a member needing a newer zip version than zipfile knows
            raise InputError(path, f"a zip archive Python's zipfile cannot read ({error})") from None
    return _open_archives[key]


def read_member(archive_path: str, member: str) -> bytes:
    handle = archive(archive_path)
    where = f"{archive_path}{SEPARATOR}{member}"
    try:
        info = handle.getinfo(member)
    except KeyError:
        raise InputError(where, "not in the archive") from None
    limit = member_limit(member)
    if info.file_size > limit:
        raise InputError(
            where, f"archive member declares {info.file_size:,} bytes uncompressed, more than the {limit:,} "
            f"a file of its kind may have (a decompression bomb?)",
        )
    if remote.is_url(archive_path):
        def attempt():
            try:
                return _read(archive(archive_path), info, where, from_bucket=True)
            except InputError:
                raise
            except Exception:
                # A dropped connection can leave the handle's cache half-filled: reopen.
                _open_archives.pop((os.getpid(), archive_path), None)
                raise
        return remote.retrying(where, "read", attempt)
    return _read(handle, info, where)


def _read(handle: zipfile.ZipFile, info: zipfile.ZipInfo, where: str, from_bucket: bool = False) -> bytes:
    # zipfile stops inflating at the declared size and then finds the CRC wrong, so a
    # member that inflates beyond what it declares ends as BadZipFile below.
    try:
        return handle.read(info)
    except NotImplementedError:
        name = _COMPRESSION_NAMES.get(info.compress_type, f"method {info.compress_type}")
        raise InputError(
            where, f"compressed with {name}, which Python's zipfile cannot read; re-pack the archive with Deflate"
        ) from None
    except RuntimeError as error:  # after NotImplementedError, its subclass: zipfile's way of saying "encrypted"
        raise InputError(where, f"encrypted archive member, which csconv cannot read ({error})") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError) as error:
        raise InputError(where, f"corrupt archive member ({error})") from None
    except OSError as error:
        if from_bucket:  # a network failure, not the member's: retried, or reported as one
            raise
        raise InputError(where, f"corrupt archive member ({error})") from None
