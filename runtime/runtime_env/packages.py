"""Driver side of runtime_env packages: zip working_dir and py_modules deterministically (the
same tree gives the same bytes, so the same content-hash URI) and keep them in the cluster KV in
chunks that fit a gRPC message, uploaded once."""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from collections.abc import Callable, Iterator
from fnmatch import fnmatch
from typing import Any

from runtime.runtime_env.spec import URI_PREFIX, URI_RE, RuntimeEnv, RuntimeEnvError, validate

MAX_PACKAGE_BYTES = 100 * 1024 * 1024
EXCLUDED_DIRS = frozenset(
    {"__pycache__", ".git", ".venv", ".hg", ".svn", ".mypy_cache", ".pytest_cache", ".ruff_cache"}
)
KV_NAMESPACE = "runtime_env"
KV_CHUNK_BYTES = 1024 * 1024  # gRPC refuses messages over 4 MiB by default
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


_ALIAS = "alias:"  # alias:<a client's package URI> -> the content-hash URI it was kept under


def content_uri(data: bytes) -> str:
    """A package's name in the KV: its content's hash."""
    return f"{URI_PREFIX}{hashlib.sha256(data).hexdigest()[:16]}.zip"


def package(
    raw: dict[str, Any] | None,
    upload: Callable[[str, bytes], None],
    exists: Callable[[str], bool],
    *,
    max_package_bytes: int = MAX_PACKAGE_BYTES,
) -> RuntimeEnv:
    """Validate, zip working_dir and each py_module deterministically, upload each zip once under
    its content-hash URI, and return the normalized env."""
    spec = validate(raw)
    excludes = tuple(spec.get("excludes", ()))

    def to_uri(path: str, top: str) -> str:
        if path.startswith("gcs://"):
            return path
        data = zip_directory(path, top=top, excludes=excludes, max_bytes=max_package_bytes)
        uri = content_uri(data)
        if not exists(uri):
            upload(uri, data)
        return uri

    working_dir = spec.get("working_dir")
    return RuntimeEnv(
        env_vars=spec.get("env_vars", {}),
        working_dir_uri=to_uri(working_dir, "") if working_dir else None,
        # a py_module keeps its folder name inside the zip so that `import <name>` works
        py_module_uris=tuple(
            to_uri(p, os.path.basename(p.rstrip("/"))) for p in spec.get("py_modules", ())
        ),
        pip=tuple(spec.get("pip", ())),
    )


def zip_directory(
    root: str, *, top: str = "", excludes: tuple[str, ...] = (), max_bytes: int = MAX_PACKAGE_BYTES
) -> bytes:
    """The same tree always gives the same bytes: sorted entries, fixed timestamps and modes."""
    files = list(_walk(root, excludes))
    for rel, size in files:
        if size > max_bytes:
            raise RuntimeEnvError(
                f"{os.path.join(root, rel)} is {size / 2**20:.1f} MiB, over the {max_bytes / 2**20:.0f} MiB "
                "package limit; add it to runtime_env['excludes'] and load it from shared storage"
            )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for rel, _ in files:
            src = os.path.join(root, rel)
            info = zipfile.ZipInfo(f"{top}/{rel}" if top else rel, date_time=_ZIP_EPOCH)
            mode = 0o755 if os.access(src, os.X_OK) else 0o644
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(src, "rb") as f:
                zf.writestr(info, f.read())
    data = buf.getvalue()
    if len(data) > max_bytes:
        biggest = sorted(files, key=lambda f: -f[1])[:5]
        listing = ", ".join(f"{rel} ({size / 2**20:.1f} MiB)" for rel, size in biggest)
        raise RuntimeEnvError(
            f"package of {root} is {len(data) / 2**20:.1f} MiB zipped, over the {max_bytes / 2**20:.0f} MiB "
            f"limit; largest files: {listing}. Exclude data with runtime_env['excludes']"
        )
    return data


def _walk(root: str, excludes: tuple[str, ...]) -> Iterator[tuple[str, int]]:
    """(relative posix path, size) of every regular file to pack, in sorted order."""
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/")
        dirnames[:] = sorted(
            d
            for d in dirnames
            if d not in EXCLUDED_DIRS
            # any virtualenv, whatever its name: never ship an interpreter tree
            and not os.path.exists(os.path.join(dirpath, d, "pyvenv.cfg"))
            and not _excluded(f"{rel_dir}/{d}".lstrip("/"), excludes)
        )
        for name in sorted(filenames):
            rel = f"{rel_dir}/{name}".lstrip("/")
            path = os.path.join(dirpath, name)
            if name.endswith(".pyc") or _excluded(rel, excludes) or not os.path.isfile(path):
                continue
            yield rel, os.path.getsize(path)


def _excluded(rel: str, patterns: tuple[str, ...]) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return any(fnmatch(rel, p.strip("/")) or fnmatch(name, p) for p in patterns)


class KvPackageStore:
    """Packages in the cluster KV, split into chunks that fit a gRPC message. The manifest is
    written last, so `exists` never sees a half-uploaded package."""

    def __init__(
        self, put: Callable[[str, bytes], None], get: Callable[[str], bytes | None]
    ) -> None:
        self._put = put
        self._get = get

    @classmethod
    def over_gcs(cls, gcs_call: Callable[[str, Any], Any]) -> KvPackageStore:
        """A store over the GCS KV (namespace "runtime_env"), e.g. `over_gcs(_core().gcs_call)`.
        `gcs_call(method, request)` must be synchronous (on the raylet: run prepare in a thread
        and bridge the aio stub with run_coroutine_threadsafe)."""
        from runtime.protocol import gcs_pb2

        def put(key: str, value: bytes) -> None:
            request = gcs_pb2.KvRequest(ns=KV_NAMESPACE, key=key, value=value, overwrite=True)
            gcs_call("KvPut", request)

        def get(key: str) -> bytes | None:
            reply = gcs_call("KvGet", gcs_pb2.KvRequest(ns=KV_NAMESPACE, key=key))
            return bytes(reply.value) if reply.found else None

        return cls(put, get)

    def upload(self, uri: str, data: bytes) -> None:
        chunks = [data[i : i + KV_CHUNK_BYTES] for i in range(0, len(data), KV_CHUNK_BYTES)]
        for i, chunk in enumerate(chunks):
            self._put(f"{uri}#{i}", chunk)
        manifest = {
            "chunks": len(chunks),
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        self._put(uri, json.dumps(manifest).encode())

    def exists(self, uri: str) -> bool:
        return self._get(uri) is not None

    def upload_aliased(self, name: str, data: bytes) -> str:
        """Keep a zip a client made and named (Ray's `gcs://_ray_pkg_<hash>.zip`, whose hash is
        not of the zip's bytes) under its content-hash URI, and remember the client's name for
        it; returns the URI. A name in rayctl's own form must match the content."""
        uri = content_uri(data)
        if URI_RE.match(name) and name != uri:
            raise RuntimeEnvError(f"package {name} does not hold the content its name says "
                                  f"(that content is {uri})")
        if not self.exists(uri):
            self.upload(uri, data)
        if name != uri:
            self._put(_ALIAS + name, uri.encode())
        return uri

    def resolve_alias(self, name: str) -> str | None:
        """The URI a client's package name stands for (None: never uploaded)."""
        if URI_RE.match(name):
            return name if self.exists(name) else None
        raw = self._get(_ALIAS + name)
        return raw.decode() if raw is not None else None

    def download(self, uri: str) -> bytes:
        raw = self._get(uri)
        if raw is None:
            raise RuntimeEnvError(
                f"package {uri} is not in the cluster KV; re-submit from the driver"
            )
        manifest = json.loads(raw)
        parts = [self._get(f"{uri}#{i}") for i in range(manifest["chunks"])]
        data = b"".join(p or b"" for p in parts)
        if hashlib.sha256(data).hexdigest() != manifest["sha256"]:
            raise RuntimeEnvError(
                f"package {uri} is corrupt in the cluster KV; re-submit from the driver"
            )
        return data
