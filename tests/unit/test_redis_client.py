"""The RESP client in module_utils/redis_sentinel.py against a real Redis and Sentinel.

The real servers (a master, a replica and a sentinel, all with passwords) run on
127.77.1.1 for the whole module, see fixtures/redis/lab.py. Protocol edge
cases a healthy server never produces (silence, a cut reply, an HTTP answer)
come from tiny scripted socket servers.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from ansible_collections.hastack.ha.plugins.module_utils.redis_sentinel import (
    Credentials,
    Endpoint,
    RedisAuthError,
    RedisError,
    RedisReplyError,
    RespConnection,
    agreed_master,
    encode_command,
    fetch_info,
    pairs,
    parse_info,
    parse_info_record,
    parse_role,
    redis_view,
    sentinel_view,
)

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "redis"))
from redis_unit_lab import HOST, REDIS_SERVER, RedisLab, free_port, redis_lab


@pytest.fixture(scope="module")
def lab() -> Iterator[RedisLab]:
    if not REDIS_SERVER.exists():
        pytest.skip(f"Redis is not installed ({REDIS_SERVER} missing): apt-get install -y redis-server")
    with redis_lab() as running:
        yield running


def connect(lab: RedisLab, port: int | None = None, password: str | None = "lab", timeout: float = 2.0):
    return RespConnection(lab.host, port or lab.master_port, timeout, lab.password if password == "lab" else password)


# --- scripted servers -------------------------------------------------------------


class Scripted:
    """Accepts connections on 127.77.1.1 and answers each with ``behaviour(conn)``."""

    def __init__(self, behaviour: Callable[[socket.socket], None]) -> None:
        self.listener = socket.socket()
        self.listener.bind((HOST, 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, args=(behaviour,), daemon=True)
        self.thread.start()

    def _serve(self, behaviour: Callable[[socket.socket], None]) -> None:
        self.listener.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                behaviour(conn)

    def close(self) -> None:
        self.stop.set()
        self.listener.close()
        self.thread.join(timeout=2)


@pytest.fixture
def scripted() -> Iterator[Callable[[Callable[[socket.socket], None]], Scripted]]:
    servers: list[Scripted] = []

    def make(behaviour: Callable[[socket.socket], None]) -> Scripted:
        servers.append(Scripted(behaviour))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def reply_with(data: bytes) -> Callable[[socket.socket], None]:
    def behaviour(conn: socket.socket) -> None:
        conn.recv(65536)
        conn.sendall(data)
        time.sleep(0.2)

    return behaviour


# --- encoding and parsers (no server) ---------------------------------------------


def test_encode_command_is_a_resp_array_of_bulk_strings():
    assert encode_command("SET", "k", 12, b"\x00v") == b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n12\r\n$2\r\n\x00v\r\n"
    with pytest.raises(ValueError, match="at least its name"):
        encode_command()


def test_parse_info_keeps_fields_and_drops_headers():
    text = "# Replication\r\nrole:master\r\nconnected_slaves:1\r\nslave0:ip=10.0.0.2,port=6379,state=online\r\n\r\n"
    info = parse_info(text)
    assert info == {"role": "master", "connected_slaves": "1", "slave0": "ip=10.0.0.2,port=6379,state=online"}
    assert parse_info_record(info["slave0"]) == {"ip": "10.0.0.2", "port": "6379", "state": "online"}


def test_parse_role_of_master_replica_and_sentinel():
    master = parse_role(["master", 3129659, [["127.45.0.12", "6379", "3129242"], ["127.45.0.13", "6379", "3129543"]]])
    assert master["role"] == "master"
    assert master["offset"] == 3129659
    assert master["replicas"] == [
        {"address": "127.45.0.12:6379", "offset": 3129242},
        {"address": "127.45.0.13:6379", "offset": 3129543},
    ]
    replica = parse_role(["slave", "127.45.0.11", 6379, "connected", 3167038])
    assert (replica["role"], replica["master_address"], replica["link_state"], replica["offset"]) == (
        "slave",
        "127.45.0.11:6379",
        "connected",
        3167038,
    )
    assert parse_role(["sentinel", ["hsred"]])["role"] == "sentinel"
    with pytest.raises(ValueError):
        parse_role("PONG")


def test_pairs_rejects_an_odd_list():
    assert pairs(["a", "1", "b", "2"]) == {"a": "1", "b": "2"}
    with pytest.raises(ValueError):
        pairs(["a", "1", "b"])


def test_agreed_master_needs_every_answer_to_match():
    a = {"master": {"address": "10.0.0.1:6379"}}
    b = {"master": {"address": "10.0.0.2:6379"}}
    assert agreed_master([a, a, {"master": None}]) == "10.0.0.1:6379"
    assert agreed_master([a, b]) is None
    assert agreed_master([]) is None


# --- a real Redis -------------------------------------------------------------------


def test_ping_and_types_round_trip(lab):
    with connect(lab) as conn:
        assert conn.command("PING") == "PONG"
        assert conn.command("SET", "unit:k", "välue") == "OK"
        assert conn.command("GET", "unit:k") == "välue"
        assert conn.command("GET", "unit:missing") is None
        assert conn.command("DEL", "unit:n") in (0, 1)
        assert conn.command("INCR", "unit:n") == 1
        assert conn.command("RPUSH", "unit:l", "a", "b") >= 2
        assert conn.command("LRANGE", "unit:l", 0, 1) == ["a", "b"]
        big = "x" * 1_000_000
        conn.command("SET", "unit:big", big)
        assert conn.command("GET", "unit:big") == big


def test_error_reply_raises_with_its_code(lab):
    with connect(lab) as conn:
        conn.command("SET", "unit:s", "1")
        with pytest.raises(RedisReplyError) as caught:
            conn.command("LPUSH", "unit:s", "x")
        assert caught.value.code == "WRONGTYPE"
        assert caught.value.address == f"{lab.host}:{lab.master_port}"
        assert conn.command("PING") == "PONG"  # the connection is still usable


def test_no_password_is_refused(lab):
    with connect(lab, password=None) as conn, pytest.raises(RedisAuthError, match="NOAUTH"):
        conn.command("PING")


def test_wrong_password_fails_on_connect_without_showing_it(lab):
    with pytest.raises(RedisAuthError) as caught:
        connect(lab, password="not-the-password").connect()
    assert "check the password" in str(caught.value)
    assert "WRONGPASS" in str(caught.value)
    assert "not-the-password" not in str(caught.value)


def test_connection_refused_names_the_address():
    port = free_port()
    with pytest.raises(RedisError, match=r"127\.77\.1\.1:\d+: connection refused"):
        RespConnection(HOST, port, 1.0).connect()


def test_bad_timeout_is_rejected():
    with pytest.raises(ValueError, match="timeout must be > 0"):
        RespConnection(HOST, 6379, 0)


def test_role_and_info_of_master_and_replica(lab):
    master = redis_view(Endpoint(lab.host, lab.master_port, "m"), Credentials(lab.password))
    replica = redis_view(Endpoint(lab.host, lab.replica_port, "r"), Credentials(lab.password))

    replica_address = f"{lab.host}:{lab.replica_port}"
    assert master["reachable"] and master["error"] is None
    assert master["role"] == "master"
    assert master["connected_replicas"] == 1
    assert [r["address"] for r in master["replicas"]] == [replica_address]
    assert master["replicas"][0]["state"] == "online"
    assert master["min_replicas_good"] is None  # min-replicas-to-write is off in this lab
    assert replica["role"] == "slave"
    assert replica["master_address"] == f"{lab.host}:{lab.master_port}"
    assert replica["master_link_status"] == "up"
    assert replica["link_state"] == "connected"
    assert replica["name"] == "r"


def test_redis_view_of_a_dead_or_locked_member_does_not_raise(lab):
    dead = redis_view(Endpoint(HOST, free_port()), Credentials(lab.password), timeout=0.5)
    locked = redis_view(Endpoint(lab.host, lab.master_port), Credentials("wrong-password"))

    assert (dead["reachable"], dead["role"]) == (False, None)
    assert "connection refused" in dead["error"]
    assert locked["reachable"] is False
    assert "Redis password" in locked["error"]


# --- a real Sentinel ----------------------------------------------------------------


def test_sentinel_view_of_a_healthy_master(lab):
    view = sentinel_view(
        Endpoint(lab.host, lab.sentinel_port, "s"), lab.master_name, Credentials(lab.sentinel_password)
    )

    assert view["reachable"] and view["monitors"] and view["error"] is None
    master = view["master"]
    assert master["address"] == f"{lab.host}:{lab.master_port}"
    assert master["flags"] == ["master"]
    assert master["quorum"] == 1
    assert master["down_after_milliseconds"] == 5000
    assert master["failover_timeout"] == 10000
    assert master["parallel_syncs"] == 1
    assert master["num_slaves"] == 1
    assert master["num_other_sentinels"] == 0
    assert view["ckquorum"]["ok"] is True
    assert view["ckquorum"]["message"].startswith("OK 1 usable Sentinels")
    assert [r["address"] for r in view["replicas"]] == [f"{lab.host}:{lab.replica_port}"]
    assert view["replicas"][0]["flags"] == ["slave"]
    assert view["sentinels"] == []
    assert view["tilt"] is False


def test_sentinel_view_of_an_unknown_master(lab):
    view = sentinel_view(Endpoint(lab.host, lab.sentinel_port), "nosuch", Credentials(lab.sentinel_password))

    assert view["reachable"] is True
    assert view["monitors"] is False
    assert view["error"].startswith("does not monitor master 'nosuch'")


def test_sentinel_refuses_a_wrong_password(lab):
    view = sentinel_view(Endpoint(lab.host, lab.sentinel_port), lab.master_name, Credentials(lab.password))
    anonymous = sentinel_view(Endpoint(lab.host, lab.sentinel_port), lab.master_name, Credentials())

    assert view["reachable"] is False
    assert "sentinel password" in view["error"]
    assert "NOAUTH" in anonymous["error"]


def test_fetch_info_of_the_whole_lab(lab):
    info = fetch_info(
        lab.master_name,
        [Endpoint(lab.host, lab.sentinel_port, "s1")],
        [Endpoint(lab.host, lab.master_port, "m"), Endpoint(lab.host, lab.replica_port, "r")],
        Credentials(lab.password),
        Credentials(lab.sentinel_password),
    )

    assert info["master"] == f"{lab.host}:{lab.master_port}"
    assert info["masters"] == [f"{lab.host}:{lab.master_port}"]
    assert info["errors"] == {}
    assert [s["name"] for s in info["sentinels"]] == ["s1"]
    assert [r["name"] for r in info["redis"]] == ["m", "r"]


def test_fetch_info_lists_dead_members_and_does_not_raise(lab):
    dead = free_port()
    info = fetch_info(
        lab.master_name,
        [Endpoint(lab.host, lab.sentinel_port), Endpoint(HOST, dead)],
        [Endpoint(lab.host, lab.master_port)],
        Credentials(lab.password),
        Credentials(lab.sentinel_password),
        timeout=0.5,
    )

    assert info["master"] == f"{lab.host}:{lab.master_port}"
    assert list(info["errors"]) == [f"{HOST}:{dead}"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"master_name": ""}, "master_name is empty"),
        ({"sentinels": [], "redis": []}, "no endpoints"),
        ({"timeout": 0}, "timeout must be > 0"),
    ],
)
def test_fetch_info_rejects_bad_arguments(kwargs, message):
    args = {
        "master_name": "m",
        "sentinels": [Endpoint(HOST, 1)],
        "redis": [],
        "redis_credentials": Credentials(),
        "sentinel_credentials": Credentials(),
        "timeout": 1.0,
    } | kwargs
    with pytest.raises(ValueError, match=message):
        fetch_info(**args)


# --- protocol edge cases --------------------------------------------------------------


def test_silence_times_out(scripted):
    server = scripted(lambda conn: (conn.recv(65536), time.sleep(1.5)))
    start = time.monotonic()
    with (
        RespConnection(HOST, server.port, 0.3) as conn,
        pytest.raises(RedisError, match=r"no answer to PING within 0\.3 s"),
    ):
        conn.command("PING")
    assert time.monotonic() - start < 1.2


def test_cut_reply_is_an_error(scripted):
    server = scripted(reply_with(b"$10\r\nabc"))
    with RespConnection(HOST, server.port, 1.0) as conn, pytest.raises(RedisError, match="middle of a reply"):
        conn.command("GET", "k")


def test_closed_connection_is_an_error(scripted):
    server = scripted(lambda conn: conn.recv(65536))
    with RespConnection(HOST, server.port, 1.0) as conn, pytest.raises(RedisError, match="closed by the server"):
        conn.command("PING")


def test_http_answer_is_a_protocol_error(scripted):
    server = scripted(reply_with(b"HTTP/1.1 400 Bad Request\r\n\r\n"))
    with RespConnection(HOST, server.port, 1.0) as conn, pytest.raises(RedisError, match="is this Redis"):
        conn.command("PING")


def test_nested_replies_nil_and_errors_inside_arrays(scripted):
    server = scripted(reply_with(b"*4\r\n:7\r\n$-1\r\n*1\r\n+OK\r\n-ERR inner\r\n"))
    with RespConnection(HOST, server.port, 1.0) as conn:
        reply = conn.command("EXEC")
    assert reply[:3] == [7, None, ["OK"]]
    assert reply[3] == "ERR inner"  # kept as a value inside an array, not raised
