"""from_pretrained's resolution of a local folder or a hub id, offline."""

import pytest
from ferrotune.hub import resolve_folder


def test_a_local_folder_is_used_as_it_is(tmp_path):
    assert resolve_folder(tmp_path) == tmp_path
    assert resolve_folder(str(tmp_path)) == tmp_path


def test_a_file_is_not_a_folder(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("{}")
    with pytest.raises(NotADirectoryError, match="config.json"):
        resolve_folder(path)


@pytest.mark.parametrize("offline", ["1", "0"])
def test_an_unreachable_hub_id_names_the_id_and_says_to_pass_a_folder(
    monkeypatch, tmp_path, offline
):
    # This machine cannot reach the hub: with HF_HUB_OFFLINE=1 the cache alone is asked, without
    # it the download fails; either way the error names the id.
    monkeypatch.setenv("HF_HUB_OFFLINE", offline)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(
        OSError, match=r"could not find 'ferrotune-test/no-such-model'.*local folder"
    ):
        resolve_folder("ferrotune-test/no-such-model")


def test_a_missing_path_that_is_no_hub_id_says_so(tmp_path):
    missing = str(tmp_path / "no" / "such" / "folder")
    with pytest.raises(OSError, match="not a local folder and not a valid Hugging Face hub id"):
        resolve_folder(missing)


def test_a_non_string_is_a_type_error():
    with pytest.raises(TypeError, match="got int"):
        resolve_folder(42)
