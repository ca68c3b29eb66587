"""gs:// locations: parsing, the path Vertex AI mounts them at, folder copies.

Vertex AI training containers see every bucket of the project through Cloud
Storage FUSE under `/gcs/<bucket>/`, so an artifact store at `gs://b/p` is the
file tree `/gcs/b/p` inside a job. Serving containers and Compute Engine VMs
have no such mount; they copy folders in and out with `download_folder` and
`upload_folder` (`python -m zenml.integrations.gcp.storage`).
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path, PurePosixPath
from typing import Any

logger = logging.getLogger(__name__)

FUSE_ROOT = PurePosixPath("/gcs")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")


def split_gcs_uri(uri: str) -> tuple[str, str]:
    """Bucket and object prefix (no slashes at either end) of a gs:// URI."""
    if not uri.startswith("gs://"):
        raise ValueError(
            f"{uri!r} is not a Cloud Storage location; give one as "
            "gs://BUCKET or gs://BUCKET/PATH"
        )
    bucket, _, prefix = uri[len("gs://") :].partition("/")
    if not _BUCKET.match(bucket):
        raise ValueError(
            f"{uri!r} names bucket {bucket!r}, which is not a valid bucket name; "
            "bucket names are 3-222 lowercase letters, digits, '-', '_' and '.'"
        )
    return bucket, prefix.strip("/")


def join_gcs(uri: str, *parts: str) -> str:
    """`uri` with `parts` appended, one slash between each."""
    bucket, prefix = split_gcs_uri(uri)
    path = "/".join(p.strip("/") for p in (prefix, *parts) if p.strip("/"))
    return f"gs://{bucket}/{path}" if path else f"gs://{bucket}"


def fuse_path(uri: str) -> PurePosixPath:
    """The path Vertex AI training containers see `uri` at."""
    bucket, prefix = split_gcs_uri(uri)
    return FUSE_ROOT / bucket / prefix if prefix else FUSE_ROOT / bucket


def gcs_uri(path: PurePosixPath | str) -> str:
    """The gs:// URI behind a path under the Cloud Storage FUSE mount."""
    relative = PurePosixPath(path)
    if not relative.is_relative_to(FUSE_ROOT) or relative == FUSE_ROOT:
        raise ValueError(
            f"{path} is not under {FUSE_ROOT}/BUCKET, where Vertex AI mounts "
            "Cloud Storage; keep the artifact store in a gs:// bucket mounted there"
        )
    return "gs://" + str(relative.relative_to(FUSE_ROOT))


def _client(client: Any | None) -> Any:
    if client is not None:
        return client
    try:
        from google.cloud import storage  # type: ignore[attr-defined]
    except ImportError as exc:
        raise ImportError(
            "copying to and from gs:// needs google-cloud-storage; "
            "`pip install 'zenml[gcp]'`, or add it to the image"
        ) from exc
    return storage.Client()


def download_folder(uri: str, target: Path, client: Any | None = None) -> int:
    """Copy every object under `uri` into `target`; returns how many."""
    bucket, prefix = split_gcs_uri(uri)
    client = _client(client)
    start = f"{prefix}/" if prefix else ""
    count = 0
    for blob in client.list_blobs(bucket, prefix=start):
        relative = blob.name[len(start) :]
        # Folder placeholders ("name/") written by the console hold no data.
        if not relative or relative.endswith("/"):
            continue
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        blob.download_to_filename(str(destination))
        count += 1
    if count == 0:
        raise FileNotFoundError(
            f"nothing under {uri}; check the URI and that this service account "
            "may list the bucket"
        )
    logger.info("Copied %d files from %s to %s", count, uri, target)
    return count


def upload_folder(folder: Path, uri: str, client: Any | None = None) -> int:
    """Copy every file under `folder` to `uri`, keeping relative paths."""
    bucket_name, prefix = split_gcs_uri(uri)
    bucket = _client(client).bucket(bucket_name)
    count = 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = "/".join(filter(None, (prefix, path.relative_to(folder).as_posix())))
        bucket.blob(name).upload_from_filename(str(path))
        count += 1
    logger.info("Copied %d files from %s to %s", count, folder, uri)
    return count


def main(argv: list[str] | None = None) -> int:
    """`upload FOLDER gs://...` or `download gs://... FOLDER`."""
    parser = argparse.ArgumentParser(prog="python -m zenml.integrations.gcp.storage")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("upload", help="copy a folder to gs://")
    up.add_argument("folder", type=Path)
    up.add_argument("uri")
    down = commands.add_parser("download", help="copy gs:// into a folder")
    down.add_argument("uri")
    down.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.command == "upload":
            upload_folder(args.folder, args.uri)
        else:
            download_folder(args.uri, args.folder)
    except (ValueError, FileNotFoundError) as exc:
        print(f"zenml: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
