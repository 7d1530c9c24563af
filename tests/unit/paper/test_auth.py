"""Parameter parsing, HMAC verification and the timestamp window of the paper exchange's auth.

Expected signatures are computed here with hmac/hashlib straight from Binance's recipe (§2.3), and
the worked example is Binance's own vector, so a misreading in auth.py is not mirrored.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import quote, urlencode

import pytest

from procs.paper_exchange.errors import ApiError
from procs.paper_exchange.web.auth import (
    authenticate_signed,
    check_api_key,
    check_timestamp,
    is_signature_valid,
    parse_params,
    signed_payload,
)

DOC_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
DOC_PARAMS = (
    "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1"
    "&recvWindow=5000&timestamp=1499827319559"
)
DOC_SIGNATURE = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"

KEY = "paper-key-test"
SECRET = "paper-secret-test"


def sign(secret: str, text: str) -> str:
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


def test_worked_example_from_binance_docs_verifies() -> None:
    assert is_signature_valid(DOC_SECRET, DOC_PARAMS, DOC_SIGNATURE)


def test_worked_example_with_upper_case_hex_verifies() -> None:
    assert is_signature_valid(DOC_SECRET, DOC_PARAMS, DOC_SIGNATURE.upper())


def test_worked_example_with_one_changed_character_fails() -> None:
    assert not is_signature_valid(DOC_SECRET, DOC_PARAMS.replace("0.1", "0.2"), DOC_SIGNATURE)


def test_signature_pair_is_removed_from_the_query() -> None:
    payload, signature = signed_payload(DOC_PARAMS + "&signature=" + DOC_SIGNATURE, "")
    assert payload == DOC_PARAMS
    assert signature == DOC_SIGNATURE


def test_signature_in_the_middle_of_the_query_is_removed_with_its_ampersand() -> None:
    payload, signature = signed_payload("a=1&signature=abc&b=2", "")
    assert (payload, signature) == ("a=1&b=2", "abc")


def test_query_and_body_are_concatenated_without_separator() -> None:
    # Binance's docs example 3: part in the query, part in the body.
    query = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC"
    body = "quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"
    signature = sign(DOC_SECRET, query + body)
    payload, found = signed_payload(query, body + "&signature=" + signature)
    assert payload == query + body
    assert found == signature
    assert is_signature_valid(DOC_SECRET, payload, signature)


def test_any_parameter_order_verifies_against_the_string_as_sent() -> None:
    # ccxt puts timestamp first; python-binance sorts keys.
    for text in (
        "timestamp=1499827319559&symbol=BTCUSDT&side=BUY&recvWindow=10000",
        "recvWindow=10000&side=BUY&symbol=BTCUSDT&timestamp=1499827319559",
    ):
        assert is_signature_valid(SECRET, text, sign(SECRET, text))


def test_percent_encoded_body_signed_unencoded_python_binance_style_verifies() -> None:
    raw = 'batchOrders=[{"symbol":"BTCUSDT","side":"BUY"}]&timestamp=1499827319559'
    signature = sign(SECRET, raw)  # python-binance signs the unencoded string
    wire = urlencode(
        [("batchOrders", '[{"symbol":"BTCUSDT","side":"BUY"}]'), ("timestamp", "1499827319559")]
    )
    assert wire != raw
    assert is_signature_valid(SECRET, wire, signature)


def test_percent_encoded_body_signed_as_sent_verifies() -> None:
    wire = "batchOrders=" + quote('[{"symbol":"BTCUSDT"}]', safe="") + "&timestamp=1"
    assert is_signature_valid(SECRET, wire, sign(SECRET, wire))


def test_parse_params_merges_query_and_body_with_query_winning() -> None:
    params = parse_params("symbol=BTCUSDT&side=BUY", "side=SELL&quantity=0.001")
    assert params == {"symbol": "BTCUSDT", "side": "BUY", "quantity": "0.001"}


def test_parse_params_decodes_plus_as_space_and_percent_escapes() -> None:
    params = parse_params("", "batchOrders=%5B%7B%22a%22%3A+1%7D%5D&x=a+b")
    assert params == {"batchOrders": '[{"a": 1}]', "x": "a b"}


def test_parse_params_of_empty_inputs_is_empty() -> None:
    assert parse_params("", "") == {}


def test_matching_key_passes() -> None:
    check_api_key(KEY, KEY, "127.0.0.1")


@pytest.mark.parametrize("header", [None, "", "bad key with spaces", "x" * 300])
def test_missing_or_malformed_key_is_2014_with_401(header: str | None) -> None:
    with pytest.raises(ApiError) as e:
        check_api_key(header, KEY, "127.0.0.1")
    assert (e.value.http_status, e.value.code) == (401, -2014)


def test_unknown_well_formed_key_is_2015_with_401_and_the_ip() -> None:
    with pytest.raises(ApiError) as e:
        check_api_key("A" * 64, KEY, "10.1.2.3")
    assert (e.value.http_status, e.value.code) == (401, -2015)
    assert e.value.msg.endswith("request ip: 10.1.2.3")


SERVER_MS = 1_700_000_000_000


def window_error(params: dict[str, str], *server_ms: int) -> int | None:
    try:
        check_timestamp(params, server_ms or (SERVER_MS,))
    except ApiError as e:
        return e.code
    return None


def test_timestamp_inside_default_window_passes() -> None:
    assert window_error({"timestamp": str(SERVER_MS - 5000)}) is None


def test_timestamp_older_than_default_window_is_1021() -> None:
    assert window_error({"timestamp": str(SERVER_MS - 5001)}) == -1021


def test_timestamp_999_ms_ahead_passes_and_1000_ms_ahead_is_1021() -> None:
    assert window_error({"timestamp": str(SERVER_MS + 999)}) is None
    assert window_error({"timestamp": str(SERVER_MS + 1000)}) == -1021


def test_recv_window_widens_the_window_up_to_60000() -> None:
    params = {"timestamp": str(SERVER_MS - 60000), "recvWindow": "60000"}
    assert window_error(params) is None


def test_recv_window_above_60000_is_1131() -> None:
    assert window_error({"timestamp": str(SERVER_MS), "recvWindow": "60001"}) == -1131


def test_malformed_recv_window_is_1100() -> None:
    assert window_error({"timestamp": str(SERVER_MS), "recvWindow": "abc"}) == -1100


@pytest.mark.parametrize("timestamp", ["", "abc", "-5", "1.5"])
def test_missing_or_malformed_timestamp_is_1102(timestamp: str) -> None:
    assert window_error({"timestamp": timestamp}) == -1102


def test_timestamp_valid_in_either_clock_passes() -> None:
    wall_ms = SERVER_MS
    sim_ms = SERVER_MS + 3_600_000  # at --speed 60 simulated time runs ahead
    assert window_error({"timestamp": str(wall_ms - 100)}, sim_ms, wall_ms) is None
    assert window_error({"timestamp": str(sim_ms - 100)}, sim_ms, wall_ms) is None
    assert window_error({"timestamp": str(wall_ms + 600_000)}, sim_ms, wall_ms) == -1021


def signed_call(query: str, body: str, key: str | None = KEY, now_ms: int = SERVER_MS) -> None:
    params = parse_params(query, body)
    authenticate_signed(key, query, body, params, KEY, SECRET, (now_ms,), "127.0.0.1")


def test_signed_request_with_signature_in_body_passes() -> None:
    body = f"timestamp={SERVER_MS}&symbol=BTCUSDT&recvWindow=10000"
    signed_call("", body + "&signature=" + sign(SECRET, body))


def test_signed_request_connector_style_query_only_passes() -> None:
    query = f"symbol=BTCUSDT&side=BUY&timestamp={SERVER_MS}"
    signed_call(query + "&signature=" + sign(SECRET, query), "")


def test_signed_request_with_wrong_secret_is_1022() -> None:
    query = f"symbol=BTCUSDT&timestamp={SERVER_MS}"
    with pytest.raises(ApiError) as e:
        signed_call(query + "&signature=" + sign("other", query), "")
    assert (e.value.http_status, e.value.code) == (400, -1022)


def test_signed_request_without_signature_is_1102_naming_signature() -> None:
    with pytest.raises(ApiError) as e:
        signed_call(f"symbol=BTCUSDT&timestamp={SERVER_MS}", "")
    assert e.value.code == -1102
    assert "'signature'" in e.value.msg


def test_signed_request_without_timestamp_is_1102_naming_timestamp() -> None:
    query = "symbol=BTCUSDT"
    with pytest.raises(ApiError) as e:
        signed_call(query + "&signature=" + sign(SECRET, query), "")
    assert e.value.code == -1102
    assert "'timestamp'" in e.value.msg


def test_unknown_key_is_checked_before_the_signature() -> None:
    with pytest.raises(ApiError) as e:
        signed_call(f"timestamp={SERVER_MS}&signature=00", "", key="B" * 64)
    assert e.value.code == -2015
