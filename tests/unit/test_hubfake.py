"""The fake Hub (tests/hubfake.py) driven by the REAL huggingface_hub: the library's own calls work against
it unchanged, and the requests the library really sends are recorded and asserted on here, so a release of
huggingface_hub that sends something else fails these tests before it fails our Hub source."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import httpx
import numpy as np
import pytest
from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from safetensors.numpy import save as save_safetensors

from tests.hubfake import FakeHub

# The fixture, imported until tests/conftest.py registers tests.hubfake as a plugin; the test parameters named
# after it are what ruff's F811 (file-wide noqa at the top) would flag.

WRITE = "hf_test_write"  # alice's, who may write to acme/*
READ_ONLY = "hf_test_read"  # alice's, read only
MALLORY = "hf_test_mallory"  # a valid token of a user who is not in acme
REPO = "acme/adapter"
CONFIG = b'{"peft_type": "LORA", "r": 8}\n'
WEIGHTS = bytes(range(256)) * 40  # binary: LFS under the fake's rule
HEAD_BIN = b"\x00head"
README = b"---\nlibrary_name: peft\nbase_model: acme/base\ntags:\n- lora\n---\n# An adapter\n"


def git_blob_sha1(data: bytes) -> str:
    """Computed here, independently of the fake: git's blob id."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer_sha1(data: bytes) -> str:
    """The git id of the git-lfs pointer file (spec v1) that stands for `data` in git."""
    sha = hashlib.sha256(data).hexdigest()
    return git_blob_sha1(f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize {len(data)}\n".encode())


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def git_tree_ids(files: dict[str, bytes], lfs: set[str], where: Path) -> dict[str, str]:
    """Directory -> tree id as real git computes it, the LFS files stored as their pointer files."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    for path, data in files.items():
        pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256(data)}\nsize {len(data)}\n"
        (where / path).parent.mkdir(parents=True, exist_ok=True)
        (where / path).write_bytes(pointer.encode() if path in lfs else data)
    env = {"GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1", "PATH": os.environ["PATH"]}
    git = ["git", "-C", str(where), "-c", "core.autocrlf=false"]
    subprocess.run([*git, "init", "-q"], check=True, env=env)
    subprocess.run([*git, "add", "-A"], check=True, env=env)
    root = subprocess.run([*git, "write-tree"], check=True, env=env, capture_output=True, text=True).stdout.strip()
    listing = subprocess.run([*git, "ls-tree", "-r", "-t", root], check=True, env=env, capture_output=True, text=True)
    trees = {line.split("\t")[1]: line.split()[2] for line in listing.stdout.splitlines() if " tree " in line}
    return {"": root, **trees}


def calls(hub: FakeHub) -> list[tuple[str, str, str]]:
    return [(r.origin, r.method, r.path) for r in hub.requests]


def test_hf_hub_download_fills_the_cache_and_keeps_the_token_off_the_cdn(fake_hub: FakeHub, tmp_path: Path) -> None:
    commit = fake_hub.add_repo(REPO, {"adapter_config.json": CONFIG, "adapter.safetensors": WEIGHTS})
    fake_hub.clear_requests()

    path = hf_hub_download(REPO, "adapter.safetensors", endpoint=fake_hub.url, cache_dir=tmp_path, token=WRITE)

    assert Path(path).read_bytes() == WEIGHTS
    assert calls(fake_hub) == [
        ("hub", "HEAD", "/acme/adapter/resolve/main/adapter.safetensors"),
        ("cdn", "GET", f"/lfs/acme/adapter/{sha256(WEIGHTS)}"),
    ]
    head, get = fake_hub.requests
    assert (head.status, head.user, head.headers["accept-encoding"]) == (302, "alice", "identity")
    assert head.headers["x-hf-download-counter"] == "1"
    assert (get.status, get.auth) == (200, None)  # the library dropped the token on its way to the CDN

    # The Hugging Face cache layout of ../shared/REFERENCE.md
    storage = tmp_path / "models--acme--adapter"
    assert (storage / "refs" / "main").read_text() == commit
    snapshot = storage / "snapshots" / commit / "adapter.safetensors"
    assert path == str(snapshot) and snapshot.is_symlink()
    assert os.readlink(snapshot) == f"../../blobs/{sha256(WEIGHTS)}"
    assert (storage / "blobs" / sha256(WEIGHTS)).read_bytes() == WEIGHTS

    config = hf_hub_download(REPO, "adapter_config.json", endpoint=fake_hub.url, cache_dir=tmp_path)
    assert os.readlink(config) == f"../../blobs/{git_blob_sha1(CONFIG)}"  # a regular file: its git blob id
    assert [(r.method, r.status, r.user) for r in fake_hub.requests[2:]] == [("HEAD", 200, None), ("GET", 200, None)]

    fake_hub.clear_requests()
    again = hf_hub_download(
        REPO, "adapter.safetensors", endpoint=fake_hub.url, cache_dir=tmp_path, local_files_only=True
    )
    assert again == path and fake_hub.requests == []


def test_snapshot_download_lists_one_commit_and_fetches_every_file(fake_hub: FakeHub, tmp_path: Path) -> None:
    files = {"adapter_config.json": CONFIG, "adapter.safetensors": WEIGHTS, "extra/deep/head.bin": HEAD_BIN}
    commit = fake_hub.add_repo(REPO, files)
    fake_hub.clear_requests()

    folder = Path(snapshot_download(REPO, endpoint=fake_hub.url, cache_dir=tmp_path))

    assert folder == tmp_path / "models--acme--adapter" / "snapshots" / commit
    on_disk = {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert on_disk == fake_hub.files(REPO)  # .gitattributes of the initial commit included
    assert os.readlink(folder / "extra/deep/head.bin") == f"../../../../blobs/{sha256(HEAD_BIN)}"
    info, tree = fake_hub.requests[:2]
    assert (info.method, info.path) == ("GET", "/api/models/acme/adapter/revision/main")
    assert (tree.method, tree.path, tree.query) == (
        "GET",
        f"/api/models/acme/adapter/tree/{commit}",
        {"recursive": "true", "expand": "false"},
    )
    heads = sorted(r.path for r in fake_hub.requests if r.method == "HEAD")
    assert heads == sorted(f"/acme/adapter/resolve/{commit}/{name}" for name in files.keys() | {".gitattributes"})


def test_tree_and_paths_info_give_git_ids_and_lfs_sha256_across_pages(fake_hub: FakeHub, tmp_path: Path) -> None:
    first = fake_hub.add_repo(REPO, {"adapter_config.json": CONFIG, "adapter.safetensors": WEIGHTS})
    # sub/ holds a directory and a file whose names sort differently as git sorts trees ("inner/" > "inner.json")
    more = {"adapter_config.json": CONFIG + b"\n", "sub/inner/head.bin": b"\x01\x02", "sub/inner.json": b"{}"}
    second = fake_hub.commit(REPO, more)
    fake_hub.tree_page_size = 2  # the Hub pages by 1000 (50 with expand): make the Link header pagination show
    api = HfApi(endpoint=fake_hub.url)

    entries = {e.path: e for e in api.list_repo_tree(REPO, recursive=True, expand=True)}

    assert sorted(entries) == [
        ".gitattributes",
        "adapter.safetensors",
        "adapter_config.json",
        "sub",
        "sub/inner",
        "sub/inner.json",
        "sub/inner/head.bin",
    ]
    tree_calls = [r for r in fake_hub.requests if r.endpoint == "tree"]
    assert len(tree_calls) == 4 and "cursor" not in tree_calls[0].query
    assert all("cursor" in r.query and r.query["expand"] == "true" for r in tree_calls[1:])
    weights = entries["adapter.safetensors"]
    assert weights.lfs is not None and weights.lfs.sha256 == sha256(WEIGHTS) and weights.lfs.size == len(WEIGHTS)
    assert weights.blob_id == lfs_pointer_sha1(WEIGHTS) and weights.size == len(WEIGHTS)
    config = entries["adapter_config.json"]
    assert config.lfs is None and config.blob_id == git_blob_sha1(CONFIG + b"\n")
    assert weights.last_commit.oid == first and config.last_commit.oid == second  # type: ignore[union-attr]
    assert type(entries["sub"]).__name__ == "RepoFolder"
    lfs = {p for p, e in entries.items() if getattr(e, "lfs", None)}
    folders = {p: e.tree_id for p, e in entries.items() if hasattr(e, "tree_id")}
    assert folders == {p: oid for p, oid in git_tree_ids(fake_hub.files(REPO), lfs, tmp_path).items() if p}

    fake_hub.clear_requests()
    infos = api.get_paths_info(REPO, ["adapter.safetensors", "missing.bin", "sub"], revision=first)
    assert [(i.path, getattr(i, "lfs", None)) for i in infos] == [("adapter.safetensors", weights.lfs)]
    (sent,) = fake_hub.requests
    assert (sent.method, sent.path, sent.headers["content-type"]) == (
        "POST",
        f"/api/models/acme/adapter/paths-info/{first}",
        "application/x-www-form-urlencoded",
    )
    assert sent.body == {"paths": ["adapter.safetensors", "missing.bin", "sub"], "expand": ["false"]}
    assert [i.path for i in api.list_repo_tree(REPO, "sub", revision=second)] == ["sub/inner", "sub/inner.json"]


def test_model_info_refs_and_encoded_revisions(fake_hub: FakeHub, tmp_path: Path) -> None:
    first = fake_hub.add_repo(REPO, {"README.md": README, "adapter.safetensors": WEIGHTS})
    fake_hub.tag(REPO, "v1.0.0", first)
    fake_hub.branch(REPO, "dev", first)
    api = HfApi(endpoint=fake_hub.url, token=WRITE)
    pr = api.create_commit(REPO, [CommitOperationAdd("notes.txt", b"hi")], commit_message="Notes", create_pr=True)

    info = api.model_info(REPO, files_metadata=True)
    assert (info.id, info.sha, info.private) == (REPO, first, False)
    assert info.card_data is not None and info.card_data.library_name == "peft"
    assert "lora" in (info.tags or [])
    siblings = {s.rfilename: s for s in info.siblings or []}
    assert siblings["adapter.safetensors"].lfs.sha256 == sha256(WEIGHTS)  # type: ignore[union-attr]
    assert siblings["README.md"].blob_id == git_blob_sha1(README) and siblings["README.md"].lfs is None

    refs = api.list_repo_refs(REPO, include_pull_requests=True)
    assert {(b.name, b.target_commit) for b in refs.branches} == {("main", first), ("dev", first)}
    assert [(t.name, t.ref, t.target_commit) for t in refs.tags] == [("v1.0.0", "refs/tags/v1.0.0", first)]
    assert [(p.ref, p.target_commit) for p in refs.pull_requests or []] == [("refs/pr/1", pr.oid)]
    assert pr.pr_revision == "refs/pr/1" and fake_hub.head(REPO) == first  # main did not move

    fake_hub.clear_requests()
    assert api.model_info(REPO, revision="refs/pr/1").sha == pr.oid
    notes = hf_hub_download(REPO, "notes.txt", revision="refs/pr/1", endpoint=fake_hub.url, cache_dir=tmp_path)
    assert Path(notes).read_bytes() == b"hi"
    assert [r.path for r in fake_hub.requests[:2]] == [
        "/api/models/acme/adapter/revision/refs%2Fpr%2F1",
        "/acme/adapter/resolve/refs%2Fpr%2F1/notes.txt",
    ]
    assert api.model_info(REPO, revision="v1.0.0").sha == first
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(REPO, "notes.txt", revision="v1.0.0", endpoint=fake_hub.url, cache_dir=tmp_path)


def test_get_safetensors_metadata_reads_the_header_with_ranges(fake_hub: FakeHub) -> None:
    tensors = {"lora_A": np.zeros((8, 4000), np.float32), "lora_B": np.ones((16, 8), np.float16)}
    weights = save_safetensors(tensors, metadata={"format": "pt"})
    assert len(weights) > 100_001  # so that the first range is really a part
    fake_hub.add_repo(REPO, {"model.safetensors": weights})
    fake_hub.clear_requests()

    meta = HfApi(endpoint=fake_hub.url).get_safetensors_metadata(REPO)

    header = meta.files_metadata["model.safetensors"]
    assert header.metadata == {"format": "pt"}
    assert {name: (t.dtype, t.shape) for name, t in header.tensors.items()} == {
        "lora_A": ("F32", [8, 4000]),
        "lora_B": ("F16", [16, 8]),
    }
    ranged = [(r.origin, r.status, r.headers["range"]) for r in fake_hub.requests if "range" in r.headers]
    assert ranged == [("hub", 302, "bytes=0-100000"), ("cdn", 206, "bytes=0-100000")]


def test_create_repo_and_commit_send_what_the_fake_expects(fake_hub: FakeHub) -> None:
    api = HfApi(endpoint=fake_hub.url, token=WRITE)

    url = api.create_repo("alice/new-adapter", private=True)

    assert (url.repo_id, fake_hub.is_private("alice/new-adapter")) == ("alice/new-adapter", True)
    assert fake_hub.requests[-1].body == {"name": "new-adapter", "organization": "alice", "visibility": "private"}
    api.create_repo("alice/new-adapter", exist_ok=True)
    with pytest.raises(HfHubHTTPError) as exists:
        api.create_repo("alice/new-adapter")
    assert exists.value.response.status_code == 409

    parent = fake_hub.head("alice/new-adapter")
    fake_hub.clear_requests()
    ops = [CommitOperationAdd("adapter.safetensors", WEIGHTS), CommitOperationAdd("adapter_config.json", CONFIG)]
    info = api.create_commit(
        "alice/new-adapter", ops, commit_message="Add adapter", commit_description="v1", parent_commit=parent
    )

    assert [r.endpoint for r in fake_hub.requests] == ["preupload", "lfs_batch", "cdn_upload", "lfs_verify", "commit"]
    preupload, batch, upload, verify, commit = fake_hub.requests
    assert preupload.path == "/api/models/alice/new-adapter/preupload/main"
    assert preupload.body == {
        "files": [
            {"path": "adapter.safetensors", "sample": base64.b64encode(WEIGHTS[:512]).decode(), "size": len(WEIGHTS)},
            {"path": "adapter_config.json", "sample": base64.b64encode(CONFIG).decode(), "size": len(CONFIG)},
        ]
    }
    assert (batch.path, batch.headers["content-type"], batch.headers["accept"]) == (
        "/alice/new-adapter.git/info/lfs/objects/batch",
        "application/vnd.git-lfs+json",
        "application/vnd.git-lfs+json",
    )
    assert batch.body["operation"] == "upload" and "basic" in batch.body["transfers"]
    assert batch.body["objects"] == [{"oid": sha256(WEIGHTS), "size": len(WEIGHTS)}]
    assert (batch.body["hash_algo"], batch.body["ref"]) == ("sha256", {"name": "main"})
    assert (upload.origin, upload.method, upload.auth, upload.status) == ("cdn", "PUT", None, 200)
    assert upload.body == {"size": len(WEIGHTS), "sha256": sha256(WEIGHTS)}
    assert (verify.user, verify.body) == ("alice", {"oid": sha256(WEIGHTS), "size": len(WEIGHTS)})
    assert (commit.path, commit.headers["content-type"]) == (
        "/api/models/alice/new-adapter/commit/main",
        "application/x-ndjson",
    )
    assert commit.body == [
        {"key": "header", "value": {"summary": "Add adapter", "description": "v1", "parentCommit": parent}},
        {
            "key": "lfsFile",
            "value": {"path": "adapter.safetensors", "algo": "sha256", "oid": sha256(WEIGHTS), "size": len(WEIGHTS)},
        },
        {
            "key": "file",
            "value": {
                "content": base64.b64encode(CONFIG).decode(),
                "path": "adapter_config.json",
                "encoding": "base64",
            },
        },
    ]
    assert info.oid == fake_hub.head("alice/new-adapter") != parent
    assert info.commit_url == f"{fake_hub.url}/alice/new-adapter/commit/{info.oid}"
    assert fake_hub.file("alice/new-adapter", "adapter.safetensors") == WEIGHTS
    assert fake_hub.entry("alice/new-adapter", "adapter.safetensors").lfs
    assert not fake_hub.entry("alice/new-adapter", "adapter_config.json").lfs

    fake_hub.clear_requests()  # the same bytes again: stored already, so no upload
    api.create_commit("alice/new-adapter", [CommitOperationAdd("copy.safetensors", WEIGHTS)], commit_message="Copy")
    assert [r.endpoint for r in fake_hub.requests] == ["preupload", "lfs_batch", "commit"]
    assert fake_hub.file("alice/new-adapter", "copy.safetensors") == WEIGHTS


def test_a_commit_on_a_stale_parent_is_refused(fake_hub: FakeHub) -> None:
    base = fake_hub.add_repo(REPO, {"adapter_config.json": CONFIG})
    api = HfApi(endpoint=fake_hub.url, token=WRITE)
    winner = api.create_commit(
        REPO, [CommitOperationAdd("v.txt", b"first")], commit_message="first", parent_commit=base
    )

    with pytest.raises(HfHubHTTPError) as lost:
        api.create_commit(REPO, [CommitOperationAdd("v.txt", b"second")], commit_message="second", parent_commit=base)

    assert lost.value.response.status_code == 412
    assert fake_hub.head(REPO) == winner.oid and fake_hub.file(REPO, "v.txt") == b"first"


def test_tags_branches_and_existence_checks(fake_hub: FakeHub) -> None:
    commit = fake_hub.add_repo(REPO, {"adapter_config.json": CONFIG})
    api = HfApi(endpoint=fake_hub.url, token=WRITE)

    api.create_tag(REPO, tag="v1.0.0", revision=commit, tag_message="first release")
    assert fake_hub.tags(REPO) == {"v1.0.0": commit}
    assert (fake_hub.requests[-1].path, fake_hub.requests[-1].body) == (
        f"/api/models/acme/adapter/tag/{commit}",
        {"tag": "v1.0.0", "message": "first release"},
    )
    with pytest.raises(HfHubHTTPError) as again:
        api.create_tag(REPO, tag="v1.0.0")
    assert again.value.response.status_code == 409
    api.create_tag(REPO, tag="v1.0.0", exist_ok=True)
    with pytest.raises(RevisionNotFoundError):
        api.create_tag(REPO, tag="v2", revision="no-such-branch")

    api.create_branch(REPO, branch="stable", revision="v1.0.0")
    assert fake_hub.branches(REPO) == {"main": commit, "stable": commit}
    assert fake_hub.requests[-1].body == {"startingPoint": "v1.0.0"}
    api.create_branch(REPO, branch="stable", exist_ok=True)

    assert api.repo_exists(REPO) and not api.repo_exists("acme/nothing")
    assert api.revision_exists(REPO, "v1.0.0") and not api.revision_exists(REPO, "v9")


def test_private_repos_need_a_token_the_hub_knows(fake_hub: FakeHub, tmp_path: Path) -> None:
    fake_hub.add_repo(REPO, {"adapter.safetensors": WEIGHTS}, private=True)
    fake_hub.add_repo("acme/public", {"adapter_config.json": CONFIG})

    def download(repo: str, token: str | bool) -> str:
        return hf_hub_download(repo, "adapter.safetensors", endpoint=fake_hub.url, cache_dir=tmp_path, token=token)

    with pytest.raises(RepositoryNotFoundError) as anonymous:
        download(REPO, False)
    assert anonymous.value.response.status_code == 401
    with pytest.raises(RepositoryNotFoundError) as stranger:
        download(REPO, MALLORY)
    assert stranger.value.response.status_code == 404
    for repo in (REPO, "acme/public"):  # an unknown token is refused even on a public repo, as by the Hub
        with pytest.raises(HfHubHTTPError) as wrong:
            HfApi(endpoint=fake_hub.url, token="hf_not_a_token").model_info(repo)
        assert not isinstance(wrong.value, RepositoryNotFoundError)
        assert wrong.value.response.status_code == 401 and "Invalid credentials" in str(wrong.value)
    assert Path(download(REPO, READ_ONLY)).read_bytes() == WEIGHTS
    assert HfApi(endpoint=fake_hub.url, token=WRITE).model_info(REPO).private is True

    assert HfApi(endpoint=fake_hub.url).whoami(token=WRITE)["name"] == "alice"
    with pytest.raises(HfHubHTTPError):
        HfApi(endpoint=fake_hub.url).whoami(token="hf_not_a_token")


def test_missing_repo_revision_and_file_raise_the_library_exceptions(fake_hub: FakeHub, tmp_path: Path) -> None:
    commit = fake_hub.add_repo(REPO, {"adapter_config.json": CONFIG})

    def download(repo: str = REPO, filename: str = "adapter_config.json", revision: str = "main") -> str:
        return hf_hub_download(repo, filename, revision=revision, endpoint=fake_hub.url, cache_dir=tmp_path)

    with pytest.raises(RepositoryNotFoundError):
        download(repo="acme/missing")
    with pytest.raises(RevisionNotFoundError):
        download(revision="v9.9.9")
    with pytest.raises(RemoteEntryNotFoundError):
        download(filename="missing.safetensors")
    assert (tmp_path / "models--acme--adapter" / ".no_exist" / commit / "missing.safetensors").is_file()
    api = HfApi(endpoint=fake_hub.url, token=WRITE)
    with pytest.raises(RepositoryNotFoundError) as missing:
        api.model_info("acme/missing")
    assert missing.value.response.status_code == 404  # with a token the Hub says 404, without one 401
    with pytest.raises(RevisionNotFoundError):
        api.model_info(REPO, revision="deadbeef" * 5)
    with pytest.raises(EntryNotFoundError):
        list(api.list_repo_tree(REPO, "no/such/dir"))


def test_writes_need_a_write_token_with_rights_on_the_namespace(fake_hub: FakeHub) -> None:
    fake_hub.add_repo(REPO, {"adapter_config.json": CONFIG})
    op = [CommitOperationAdd("v.txt", b"x")]

    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=fake_hub.url, token=False).create_commit(REPO, op, commit_message="anonymous")
    for token in (READ_ONLY, MALLORY):
        with pytest.raises(HfHubHTTPError) as refused:
            HfApi(endpoint=fake_hub.url, token=token).create_commit(REPO, op, commit_message="no rights")
        assert refused.value.response.status_code == 403
    with pytest.raises(HfHubHTTPError) as foreign:
        HfApi(endpoint=fake_hub.url, token=MALLORY).create_repo("acme/taken-over")
    assert foreign.value.response.status_code == 403
    assert "v.txt" not in fake_hub.files(REPO) and not fake_hub.repo_exists("acme/taken-over")


def test_corrupt_serves_other_bytes_under_the_recorded_sha256(fake_hub: FakeHub, tmp_path: Path) -> None:
    fake_hub.add_repo(REPO, {"adapter.safetensors": WEIGHTS})
    evil = bytes(reversed(WEIGHTS))
    fake_hub.corrupt(REPO, "adapter.safetensors", evil)
    api = HfApi(endpoint=fake_hub.url)

    (listed,) = api.get_paths_info(REPO, ["adapter.safetensors"])
    path = hf_hub_download(REPO, "adapter.safetensors", endpoint=fake_hub.url, cache_dir=tmp_path)

    assert listed.lfs is not None and listed.lfs.sha256 == sha256(WEIGHTS)
    assert Path(path).read_bytes() == evil  # hf_hub_download checks the size only (REFERENCE.md)
    fake_hub.corrupt(REPO, "adapter.safetensors", evil[:-1])
    with pytest.raises(OSError, match="Consistency check failed"):
        hf_hub_download(REPO, "adapter.safetensors", endpoint=fake_hub.url, cache_dir=tmp_path / "b")


def test_resolve_answers_ranges_and_the_cdn_wants_its_signature_and_no_token(fake_hub: FakeHub) -> None:
    fake_hub.add_repo(REPO, {"adapter_config.json": CONFIG, "adapter.safetensors": WEIGHTS})
    with httpx.Client(base_url=fake_hub.url, trust_env=False, timeout=10) as client:
        part = client.get("/acme/adapter/resolve/main/adapter_config.json", headers={"Range": "bytes=2-5"})
        assert (part.status_code, part.content) == (206, CONFIG[2:6])
        assert part.headers["content-range"] == f"bytes 2-5/{len(CONFIG)}"
        head = client.head("/acme/adapter/resolve/main/adapter_config.json")
        assert (head.content, head.headers["content-length"]) == (b"", str(len(CONFIG)))
        assert head.headers["etag"] == f'"{git_blob_sha1(CONFIG)}"'
        beyond = client.get("/acme/adapter/resolve/main/adapter_config.json", headers={"Range": "bytes=999-"})
        assert (beyond.status_code, beyond.headers["content-range"]) == (416, f"bytes */{len(CONFIG)}")

        redirect = client.get("/acme/adapter/resolve/main/adapter.safetensors")
        assert redirect.status_code == 302 and redirect.headers["x-linked-etag"] == f'"{sha256(WEIGHTS)}"'
        location = redirect.headers["location"]
        assert location.startswith(fake_hub.cdn_url + "/")
        assert client.get(location, headers={"Range": "bytes=-10"}).content == WEIGHTS[-10:]
        assert client.get(location, headers={"Authorization": f"Bearer {WRITE}"}).status_code == 400
        assert client.get(location.replace("X-Amz-Signature=", "X-Amz-Signature=0")).status_code == 403


def test_the_cdn_stores_an_upload_only_with_its_signed_size_and_sha256(fake_hub: FakeHub) -> None:
    fake_hub.add_repo(REPO, {"adapter_config.json": CONFIG})
    lfs_headers = {"Authorization": f"Bearer {WRITE}", "Content-Type": "application/vnd.git-lfs+json"}
    wanted = {
        "operation": "upload",
        "transfers": ["basic"],
        "objects": [{"oid": sha256(WEIGHTS), "size": len(WEIGHTS)}],
    }
    with httpx.Client(base_url=fake_hub.url, trust_env=False, timeout=10) as client:

        def batch() -> dict:
            answer = client.post("/acme/adapter.git/info/lfs/objects/batch", json=wanted, headers=lfs_headers)
            assert (answer.status_code, answer.json()["transfer"]) == (200, "basic")
            (obj,) = answer.json()["objects"]
            return obj

        upload = batch()["actions"]["upload"]["href"]
        assert client.put(upload, content=bytes(reversed(WEIGHTS))).status_code == 400  # right size, wrong sha256
        assert client.put(upload, content=WEIGHTS[:-1]).status_code == 400
        assert fake_hub.lfs_objects(REPO) == {}
        assert client.put(upload, content=WEIGHTS).status_code == 200
        assert fake_hub.lfs_objects(REPO) == {sha256(WEIGHTS): len(WEIGHTS)}
        assert "actions" not in batch()  # stored: nothing to do


def test_upload_folder_uses_the_lfs_batch_api_not_xet(fake_hub: FakeHub, tmp_path: Path) -> None:
    folder = tmp_path / "adapter"
    (folder / "nested").mkdir(parents=True)
    (folder / "adapter_config.json").write_bytes(CONFIG)
    (folder / "nested" / "adapter_model.safetensors").write_bytes(WEIGHTS)
    api = HfApi(endpoint=fake_hub.url, token=WRITE)
    api.create_repo("acme/uploaded")

    info = api.upload_folder(repo_id="acme/uploaded", folder_path=folder, commit_message="Upload adapter")

    assert info.oid == fake_hub.head("acme/uploaded")
    assert fake_hub.files("acme/uploaded") == {
        ".gitattributes": fake_hub.file("acme/uploaded", ".gitattributes"),
        "adapter_config.json": CONFIG,
        "nested/adapter_model.safetensors": WEIGHTS,
    }
    endpoints = [r.endpoint for r in fake_hub.requests]
    assert "lfs_batch" in endpoints and "cdn_upload" in endpoints and "xet_token" not in endpoints
