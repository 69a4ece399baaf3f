"""State files stay inside their configured folder."""

import os

import pytest

from actors.runtime.storage import StorageError, inside

pytestmark = [pytest.mark.unit, pytest.mark.timeout(10)]


def test_a_state_file_resolves_inside_its_folder_and_an_escape_is_refused(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    assert inside(state, "executor-137-0xabc.sqlite") == (state / "executor-137-0xabc.sqlite").resolve()
    with pytest.raises(StorageError, match="outside"):
        inside(state, "../elsewhere.sqlite")  # a name built from outside data
    os.symlink(tmp_path / "other.sqlite", state / "nonce-137-0xabc.sqlite")  # a file that points out
    with pytest.raises(StorageError, match="outside"):
        inside(state, "nonce-137-0xabc.sqlite")
