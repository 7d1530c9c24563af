"""HMAC-SHA256 signing over the exact text sent (BINANCE-API.md §2.3)."""

from __future__ import annotations

from urllib.parse import parse_qsl

from shared.exchange.signing import Signer, encode_params, hmac_sha256_hex

# Binance's worked example (§2.3; the spot docs' vector, same algorithm).
SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
TOTAL_PARAMS = (
    "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1"
    "&recvWindow=5000&timestamp=1499827319559"
)
SIGNATURE = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"


def test_hmac_of_binance_s_worked_example() -> None:
    assert hmac_sha256_hex(SECRET, TOTAL_PARAMS) == SIGNATURE


def test_signed_params_reproduce_the_worked_example_exactly() -> None:
    signer = Signer("vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A", SECRET)
    params = [
        ("symbol", "LTCBTC"),
        ("side", "BUY"),
        ("type", "LIMIT"),
        ("timeInForce", "GTC"),
        ("quantity", "1"),
        ("price", "0.1"),
    ]
    text = signer.signed_params(params, timestamp_ms=1499827319559, recv_window_ms=5000)
    assert text == f"{TOTAL_PARAMS}&signature={SIGNATURE}"


def test_the_signature_covers_the_percent_encoded_text_as_sent() -> None:
    signer = Signer("key", "secret")
    text = signer.signed_params([("newClientOrderId", "slt-a:b/c")], 1, 5000)
    body, _, signature = text.rpartition("&signature=")
    assert body == "newClientOrderId=slt-a%3Ab%2Fc&recvWindow=5000&timestamp=1"
    assert signature == hmac_sha256_hex("secret", body)
    assert dict(parse_qsl(body))["newClientOrderId"] == "slt-a:b/c"


def test_encode_params_keeps_the_order() -> None:
    assert encode_params([("b", "2"), ("a", "1")]) == "b=2&a=1"


def test_signer_repr_shows_four_characters_of_the_key_and_nothing_of_the_secret() -> None:
    signer = Signer("ABCDEFGH", "TOPSECRETVALUE")
    assert repr(signer) == "Signer(api_key='ABCD…')"
    assert "TOPSECRET" not in repr(signer) and "TOPSECRET" not in str(vars(signer).keys())
    assert signer.key_headers == {"X-MBX-APIKEY": "ABCDEFGH"}
