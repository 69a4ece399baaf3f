"""The keystore wallet: decrypted with the password from the environment, and only from
a regular file that others cannot read."""

import json
import os

import msgspec
import pytest
from eth_account import Account

from actors.domain.wallet import WalletError, dev_account, load_wallet
from config.schema import KeystoreWallet

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]


def config_with(cfg, path):
    return msgspec.structs.replace(cfg, chain=msgspec.structs.replace(
        cfg.chain, wallet=KeystoreWallet(path=str(path), password_env_var="TEST_KEYSTORE_PASSWORD")))  # noqa: S106 - a variable name


def test_a_keystore_loads_only_from_a_private_regular_file(sandbox_config, tmp_path, monkeypatch):
    account = dev_account(3)
    store = tmp_path / "wallet.json"
    store.write_text(json.dumps(Account.encrypt(account.key, "pw", iterations=2)))
    monkeypatch.setenv("TEST_KEYSTORE_PASSWORD", "pw")
    cfg = config_with(sandbox_config, store)
    os.chmod(store, 0o644)
    with pytest.raises(WalletError, match="readable by others"):
        load_wallet(cfg)
    os.chmod(store, 0o600)
    assert load_wallet(cfg).address == account.address
    with pytest.raises(WalletError, match="not a regular file"):
        load_wallet(config_with(sandbox_config, tmp_path))
    monkeypatch.setenv("TEST_KEYSTORE_PASSWORD", "wrong")
    with pytest.raises(WalletError, match="cannot decrypt") as err:
        load_wallet(cfg)
    assert "wrong" not in str(err.value)
