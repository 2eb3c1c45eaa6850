"""The two Hub requests a download makes, a repo's file listing and one file into the HF cache,
with huggingface_hub and network failures turned into one-line SizerErrors (never showing a token)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

from sizer.core.errors import SizerError
from sizer.core.catalog.hub import hub_endpoint, network_errors
from sizer.core.paths import hf_cache_dir


class HubUnreachable(SizerError):
    """No answer from the Hub at all (refused connection, DNS, timeout): every other request would fail too."""


def repo_listing(repo: str, revision: str | None) -> tuple[str, dict[str, int]]:
    """(commit, file name -> size) of a repo at `revision`, from the Hub's model-info API."""
    from huggingface_hub import HfApi

    with hub_errors(repo, revision=revision):
        info = HfApi(endpoint=hub_endpoint()).model_info(repo, revision=revision, files_metadata=True)
    sizes = {s.rfilename: int(s.size or (s.lfs.size if s.lfs else 0) or 0) for s in info.siblings or []}
    return info.sha or revision or "main", sizes


def fetch_file(repo: str, filename: str, revision: str, bar: type | None = None) -> Path:
    """One file at `revision` into the HF cache (a cached copy is used as is); `bar` gets the bytes."""
    from huggingface_hub import hf_hub_download

    with hub_errors(repo, filename, revision):
        return Path(hf_hub_download(repo, filename, revision=revision, endpoint=hub_endpoint(),
                                    cache_dir=hf_cache_dir(), tqdm_class=bar))


def _status(exc: Any) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


@contextlib.contextmanager
def hub_errors(repo: str, filename: str | None = None, revision: str | None = None) -> Iterator[None]:
    """Turn huggingface_hub and network failures into one-line SizerErrors (never showing a token)."""
    from huggingface_hub import errors

    endpoint = hub_endpoint()
    try:
        yield
    except errors.GatedRepoError:
        raise SizerError(f"{repo} is gated: accept the licence at {endpoint}/{repo} and set HF_TOKEN "
                         "(or run `hf auth login`)") from None
    except errors.RepositoryNotFoundError as exc:
        if _status(exc) == 401:
            raise SizerError(f"{repo}: the Hub answered 401 Unauthorized (a private or gated repo, or none by that "
                             "name): set HF_TOKEN to a token that can read it, or check the repo id") from None
        raise SizerError(f"{repo} was not found on {endpoint} (404): check the repo id") from None
    except errors.RevisionNotFoundError:
        raise SizerError(f"{repo}: no revision {revision!r} on the Hub; check --revision or the catalog's "
                         "revision field") from None
    except errors.RemoteEntryNotFoundError:
        raise SizerError(f"{repo}: {filename or 'a file'} is not on the Hub at revision {revision}; "
                         "run `sizer catalog refresh` for this model") from None
    except errors.HfHubHTTPError as exc:
        raise _http_error(repo, _status(exc)) from None
    except network_errors() as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise HubUnreachable(f"cannot reach the Hugging Face Hub at {endpoint} ({reason}); {repo} not downloaded") from None
    except OSError as exc:  # after the HTTP errors above, which are OSErrors too: a full disk, a consistency check
        reason = (str(exc.strerror or exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SizerError(f"{repo}: {filename or 'download'} failed: {reason}") from None


def _http_error(repo: str, status: int | None) -> SizerError:
    if status == 401:
        return SizerError(f"{repo}: the Hub refused the token (401 Unauthorized): set HF_TOKEN to a valid token "
                          "or run `hf auth login`")
    if status == 403:
        return SizerError(f"{repo}: the Hub answered 403 Forbidden: the token lacks read access to this repo; "
                          f"request access at {hub_endpoint()}/{repo} or use a token with read permission")
    return SizerError(f"{repo}: the Hub answered {status or 'an error'}; try again later")
