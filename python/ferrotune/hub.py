"""Resolving `from_pretrained(path_or_id)` to a local folder: a folder on disk as it is, anything
else as a Hugging Face hub id through huggingface_hub's cache (which honours HF_HUB_OFFLINE)."""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

logger = logging.getLogger("ferrotune")


def ignore_remote_code(trust_remote_code: bool) -> None:
    """ferrotune never imports or runs code from a model folder or the hub (transformers does
    with trust_remote_code=True); the flag is accepted so that notebooks run, and said to do
    nothing."""
    if trust_remote_code:
        logger.warning(
            "trust_remote_code=True is ignored: ferrotune never runs code from a model "
            "folder or the hub, it uses its own implementation of the model_type"
        )


def resolve_folder(
    path_or_id: str | os.PathLike,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
    allow_patterns: list[str] | None = None,
) -> Path:
    """The local folder that holds the files of `path_or_id`.

    Raises OSError naming the id (and saying to pass a local folder) when it is neither a local
    folder nor resolvable on the hub or in the cache.
    """
    if not isinstance(path_or_id, (str, os.PathLike)):
        raise TypeError(
            f"expected a local folder or a hub id (str or os.PathLike), got "
            f"{type(path_or_id).__name__}: {path_or_id!r}"
        )
    local = Path(path_or_id).expanduser()
    if local.is_dir():
        return local
    if local.exists():
        raise NotADirectoryError(f"{str(local)!r} is a file; pass the folder that contains it")

    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    repo_id = os.fspath(path_or_id)
    # Never let a hub id name a place outside the hub cache, whatever huggingface_hub accepts.
    if os.path.isabs(repo_id) or ".." in repo_id.replace("\\", "/").split("/"):
        raise FileNotFoundError(
            errno.ENOENT,
            "not a local folder and not a valid Hugging Face hub id (a hub id is "
            "'name' or 'namespace/name', never an absolute path nor one with '..'). Pass the path "
            "of a folder that holds the model or tokenizer files",
            repo_id,
        )
    try:
        folder = snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=cache_dir,
            token=token,
            local_files_only=local_files_only,
            allow_patterns=allow_patterns,
        )
    except HFValidationError as e:
        # Not a hub id, so a local path that does not exist.
        raise FileNotFoundError(
            errno.ENOENT,
            f"not a local folder and not a valid Hugging Face hub id ({e}). Pass the path of a "
            f"folder that holds the model or tokenizer files",
            repo_id,
        ) from e
    except Exception as e:  # offline, unreachable, unknown repo, gated, ...
        raise OSError(
            f"could not find {repo_id!r}: it is not a local folder, and it could not be "
            f"downloaded from the Hugging Face hub nor found in its local cache "
            f"({type(e).__name__}: {e}). Pass the path of a local folder that holds the files, "
            f"or connect to the hub."
        ) from e
    return Path(folder)
