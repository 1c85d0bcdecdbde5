"""Where a store lives: a local folder, or a prefix in an object store (``s3://``, ``gs://``, ``az://``).

The table and its meta file live at the location, so every machine pointed at it sees the same index and the
same record of which model built it. What is per machine stays in a local folder (:attr:`Location.local`): for a
local store that is the store itself; for a remote one, ``~/.cache/rag/stores/<scheme>/<bucket>/<prefix>``. It
holds the embedding cache (SQLite needs a local file, and a miss only costs a re-embedding), the answer cache
(per user, and a hit must be fast), the eval markers and the writer lock file (which guards this machine's
writers; writers on other machines are kept apart by Lance's commit conflict handling, see :mod:`rag.store.table`).

Credentials: ``storage_options`` go to Lance and pyarrow as given; a key ending in ``_env`` names the
environment variable holding the value (``aws_secret_access_key_env: CI_S3_SECRET``). No value is ever shown:
:meth:`Location.scrub` removes them from any message that might echo one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.errors import ConfigError, StoreError

REMOTE_SCHEMES = ("s3", "gs", "az", "abfs", "s3+ddb")
_DENIED = (
    "403",
    "accessdenied",
    "access_denied",
    "access denied",
    "invalidaccesskeyid",
    "signaturedoesnotmatch",
    "forbidden",
    "unauthorized",
    "401",
)


def is_remote(uri: str) -> bool:
    return uri.split("://", 1)[0].lower() in REMOTE_SCHEMES if "://" in uri else False


def resolve_options(options: dict[str, str]) -> dict[str, str]:
    """``storage_options`` with every ``<key>_env: NAME`` replaced by ``<key>: $NAME``."""
    out: dict[str, str] = {}
    for key, value in options.items():
        if key.endswith("_env"):
            if value not in os.environ:
                raise ConfigError(f"store.storage_options.{key} names {value}, which is not set; export {value}")
            out[key[: -len("_env")]] = os.environ[value]
        else:
            out[key] = value
    return out


def cache_dir(uri: str) -> Path:
    """The local folder that goes with a remote store."""
    scheme, rest = uri.split("://", 1)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rag" / "stores"
    safe = "/".join(part for part in rest.strip("/").split("/") if part not in ("", ".", ".."))
    return base / scheme / (safe or hashlib.sha256(uri.encode()).hexdigest()[:16])


@dataclass(frozen=True)
class Location:
    uri: str  # the store's folder or prefix, as the user named it (no credentials in it)
    local: Path  # this machine's folder for the store (the store itself when it is local)
    options: dict[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, uri: str | Path, options: dict[str, str] | None = None) -> Location:
        text = str(uri)
        if is_remote(text):
            return cls(text.rstrip("/"), cache_dir(text), resolve_options(options or {}))
        return cls(text, Path(text), {})

    @property
    def remote(self) -> bool:
        return is_remote(self.uri)

    def join(self, name: str) -> str:
        return f"{self.uri}/{name}" if self.remote else str(self.local / name)

    def lance_options(self) -> dict[str, str] | None:
        return dict(self.options) if self.remote else None

    # ------------------------------------------------------------------ small files beside the table

    def is_file(self, name: str) -> bool:
        if not self.remote:
            return (self.local / name).is_file()
        return bool(self._info(name).type.name == "File")

    def is_dir(self, name: str) -> bool:
        if not self.remote:
            return (self.local / name).is_dir()
        return bool(self._info(name).type.name == "Directory")

    def read_text(self, name: str) -> str | None:
        if not self.remote:
            try:
                return (self.local / name).read_text(encoding="utf-8")
            except FileNotFoundError:
                return None
        fs, path = self._fs(name)
        try:
            with fs.open_input_stream(path) as f:
                return bytes(f.read()).decode("utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self.failed("read", exc) from exc

    def read_json(self, name: str) -> Any:
        """``name`` parsed as JSON, None when absent. In an object store a PUT is atomic but a read is a size lookup
        then a ranged GET: a writer on another machine replacing the file in between tears the read, which a second
        read does not repeat. Raises ValueError (bad JSON) or OSError."""
        attempts = 3 if self.remote else 1
        for attempt in range(attempts):
            text = self.read_text(name)
            try:
                return json.loads(text) if text is not None else None
            except ValueError:
                if attempt + 1 == attempts:
                    raise
                time.sleep(0.2)
        return None  # not reached

    def write_text(self, name: str, text: str) -> None:
        """Replace ``name`` whole: a rename locally, one PUT (atomic in object stores) remotely."""
        if not self.remote:
            self.local.mkdir(parents=True, exist_ok=True)
            tmp = self.local / f"{name}.tmp"
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, self.local / name)
            return
        fs, path = self._fs(name)
        try:
            with fs.open_output_stream(path) as f:
                f.write(text.encode("utf-8"))
        except OSError as exc:
            raise self.failed("write", exc) from exc

    def names(self, prefix: str) -> list[str]:
        """Names of the entries directly at the location that start with ``prefix``."""
        if not self.remote:
            return [p.name for p in self.local.glob(f"{prefix}*")] if self.local.is_dir() else []
        from pyarrow import fs as pafs

        filesystem, path = self._fs("")
        try:
            infos = filesystem.get_file_info(pafs.FileSelector(path.rstrip("/"), allow_not_found=True))
        except OSError as exc:
            raise self.failed("list", exc) from exc
        return [i.base_name for i in infos if i.base_name.startswith(prefix)]

    def size(self, name: str) -> int:
        """Bytes of a file, or of a folder and everything in it; 0 when absent."""
        if not self.remote:
            target = self.local / name
            if target.is_dir():
                return sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
            return target.stat().st_size if target.is_file() else 0
        from pyarrow import fs as pafs

        filesystem, path = self._fs(name)
        try:
            info = filesystem.get_file_info(path)
            if info.type.name == "File":
                return int(info.size or 0)
            if info.type.name != "Directory":
                return 0
            found = filesystem.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
        except OSError as exc:
            raise self.failed("read", exc) from exc
        return sum(int(i.size or 0) for i in found if i.type.name == "File")

    def remove(self, name: str) -> None:
        """Delete a file or a folder (a table) and everything in it."""
        if not self.remote:
            target = self.local / name
            if target.is_dir():
                shutil.rmtree(target, ignore_errors=True)
            else:
                target.unlink(missing_ok=True)
            return
        fs, path = self._fs(name)
        info = self._info(name)
        try:
            if info.type.name == "Directory":
                fs.delete_dir(path)
            elif info.type.name == "File":
                fs.delete_file(path)
        except OSError as exc:
            raise self.failed("delete", exc) from exc

    # ------------------------------------------------------------------ errors without secrets

    def scrub(self, text: str) -> str:
        for value in self.options.values():
            if len(value) >= 4:
                text = text.replace(value, "***")
        return text

    def failed(self, action: str, exc: BaseException) -> StoreError:
        """A failure talking to the object store, as one line: denied credentials are named as such."""
        from rag.store.snapshot import lance_message

        detail = self.scrub(lance_message(exc))
        if any(word in detail.lower() for word in _DENIED):
            return StoreError(
                f"{self.uri}: access denied ({action}); check the credentials (store.storage_options or the "
                "provider's environment variables, e.g. AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) and the bucket's permissions"
            )
        return StoreError(f"cannot {action} the index at {self.uri}: {detail}; check store.uri and store.storage_options")

    def _info(self, name: str) -> Any:
        fs, path = self._fs(name)
        try:
            return fs.get_file_info(path)
        except OSError as exc:
            raise self.failed("read", exc) from exc

    def _fs(self, name: str) -> tuple[Any, str]:
        """A pyarrow filesystem for the bucket, configured from the same options Lance gets."""
        from pyarrow import fs

        scheme, rest = self.join(name).split("://", 1)
        if scheme.startswith("s3"):
            o = self.options
            endpoint = o.get("endpoint") or o.get("aws_endpoint") or o.get("endpoint_url")
            kwargs: dict[str, Any] = {
                "access_key": o.get("aws_access_key_id") or o.get("access_key_id"),
                "secret_key": o.get("aws_secret_access_key") or o.get("secret_access_key"),
                "session_token": o.get("aws_session_token") or o.get("session_token"),
                "region": o.get("region") or o.get("aws_region"),
            }
            if endpoint:
                scheme_of, _, host = endpoint.partition("://")
                kwargs.update(endpoint_override=host or endpoint, scheme=scheme_of if host else "https")
            kwargs["retry_strategy"] = fs.AwsStandardS3RetryStrategy(max_attempts=2)
            return fs.S3FileSystem(**{k: v for k, v in kwargs.items() if v is not None}), rest
        filesystem, path = fs.FileSystem.from_uri(f"{scheme}://{rest}")
        return filesystem, path
