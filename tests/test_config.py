"""Tests for ntpauto.config: the ntp.conf directives, their errors and warnings."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from ntpauto.config import (
    DEFAULT_RCVBUF,
    AssociationConfig,
    Config,
    ConfigError,
    CryptoConfig,
    ListenConfig,
    RefclockConfig,
    RestrictConfig,
    default_config,
    load_config,
    parse_config,
)


def error_of(text: str, path: str = "ntp.conf") -> ConfigError:
    """The ConfigError that parsing ``text`` raises."""
    with pytest.raises(ConfigError) as info:
        parse_config(text, path)
    return info.value


# -- the reference vectors ----------------------------------------------------------------


def test_every_reference_vector_config_parses(vectors: Path) -> None:
    """All ntpd configs of the captures load, warning about (only) the unsupported lines."""
    paths = sorted(vectors.glob("pcap/*/*.ntp.conf"))
    assert len(paths) >= 20
    for path in paths:
        config = load_config(path)
        assert config.path == str(path)
        assert config.discipline_enabled  # every capture says "enable ntp"
        assert config.crypto is not None and config.crypto.pw
        assert config.listen and config.keysdir
        warned = " ".join(config.warnings)
        for directive in ("tinker", "logfile", "logconfig", "statsdir", "statistics",
                          "filegen", "interface ignore"):
            assert f"'{directive}'" in warned, (path, directive)
        assert all(w.startswith(f"{path}:") for w in config.warnings)


def test_reference_server_config(vectors: Path) -> None:
    """gq/alice: a LOCAL refclock at fudge stratum 0 (stratum-1 server), leapfile, crypto."""
    config = load_config(vectors / "pcap/gq/alice.ntp.conf")
    assert config.refclocks == (RefclockConfig(address="127.127.1.0", stratum=0, prefer=True,
                                               minpoll=3, maxpoll=3, line=6),)
    assert config.associations == ()
    assert config.listen == (ListenConfig("127.0.0.1", line=5),)
    assert config.leapfile == "/usr/share/zoneinfo/leap-seconds.list"
    assert config.crypto == CryptoConfig(host="alice", pw="alicepw",
                                         randfile="<run>/gq/alice/rnd")
    assert "kernel" not in config.enabled


def test_reference_client_config(vectors: Path) -> None:
    """gq/brenda: an Autokey client of 127.0.0.1 in group alice."""
    config = load_config(vectors / "pcap/gq/brenda.ntp.conf")
    assert config.associations == (AssociationConfig(
        kind="server", address="127.0.0.1", minpoll=3, maxpoll=3, iburst=True, autokey=True,
        ident="alice", line=6),)


def test_reference_symmetric_and_broadcast_configs(vectors: Path) -> None:
    """sym/carol is a peer with a stratum-3 LOCAL clock; bcast-gq has broadcast both ways."""
    carol = load_config(vectors / "pcap/sym/carol.ntp.conf")
    assert [a.kind for a in carol.associations] == ["peer"]
    assert carol.refclocks[0].stratum == 3
    alice = load_config(vectors / "pcap/bcast-gq/alice.ntp.conf")
    broadcast = alice.associations[0]
    assert (broadcast.kind, broadcast.address, broadcast.autokey) == ("broadcast",
                                                                      "198.18.0.255", True)
    assert (broadcast.minpoll, broadcast.maxpoll) == (3, 10)
    brenda = load_config(vectors / "pcap/bcast-gq/brenda.ntp.conf")
    assert brenda.broadcast_client and brenda.ident == "alice"


# -- defaults ---------------------------------------------------------------------------


def test_empty_config_defaults() -> None:
    """An empty file: nothing configured, auth and monitor on, discipline off, port 123."""
    config = parse_config("# nothing\n\n", "empty.conf")
    assert config == Config(path="empty.conf")
    assert config.enabled == frozenset({"auth", "monitor"})
    assert not config.discipline_enabled
    assert config.port == 123
    assert (config.discard_average, config.discard_minimum) == (3, 1)


def test_default_config_is_a_loopback_stratum1_server() -> None:
    """The newcomer default: 127.0.0.1:12300, LOCAL clock at stratum 0, open restrict."""
    config = default_config()
    assert config.port == 12300
    assert config.listen == (ListenConfig("127.0.0.1"),)
    assert config.refclocks == (RefclockConfig(address="127.127.1.0", stratum=0),)
    assert config.restrictions == (RestrictConfig(address=None, mask=None,
                                                  flags=frozenset()),)
    assert config.associations == () and config.crypto is None
    assert not config.discipline_enabled
    assert default_config(4123).port == 4123


def test_config_objects_are_frozen() -> None:
    """Config values cannot be changed after parsing."""
    config = parse_config("port 4000")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        config.port = 5000  # type: ignore[misc]


# -- associations ---------------------------------------------------------------------


def test_server_with_every_option() -> None:
    """Every association option is parsed onto AssociationConfig."""
    config = parse_config("server ntp.example.org minpoll 4 maxpoll 12 iburst burst prefer "
                          "noselect key 42 version 3 ttl 8 port 1123\n")
    assert config.associations == (AssociationConfig(
        kind="server", address="ntp.example.org", port=1123, minpoll=4, maxpoll=12,
        iburst=True, burst=True, prefer=True, noselect=True, key=42, version=3, ttl=8,
        line=1),)


def test_peer_and_broadcast_kinds_and_addresses_as_written() -> None:
    """peer and broadcast lines keep their kind; IPv6 literals and names are kept as written."""
    config = parse_config("peer 2001:db8::1 autokey ident grp\n"
                          "broadcast 192.0.2.255 ttl 2\n"
                          "server -4 time.example.com.\n")
    peer, broadcast, server = config.associations
    assert (peer.kind, peer.address, peer.autokey, peer.ident) == ("peer", "2001:db8::1",
                                                                   True, "grp")
    assert (broadcast.kind, broadcast.ttl, broadcast.line) == ("broadcast", 2, 2)
    assert server.address == "time.example.com."
    assert any("'-4'" in w for w in config.warnings)


@pytest.mark.parametrize(("options", "minpoll", "maxpoll"), [
    ("", 6, 10),
    ("minpoll 3 maxpoll 17", 3, 17),
    ("minpoll 12", 12, 12),       # a lone minpoll above the default maxpoll drags it along
    ("maxpoll 4", 4, 4),          # and a lone low maxpoll drags minpoll down
    ("minpoll 8", 8, 10),
])
def test_poll_defaults_and_ranges(options: str, minpoll: int, maxpoll: int) -> None:
    """minpoll/maxpoll default to 6/10 and stay ordered."""
    association = parse_config(f"server 192.0.2.1 {options}").associations[0]
    assert (association.minpoll, association.maxpoll) == (minpoll, maxpoll)


@pytest.mark.parametrize(("line", "message"), [
    ("server 192.0.2.1 minpoll 2", "minpoll 2 is out of range 3..17"),
    ("server 192.0.2.1 maxpoll 18", "maxpoll 18 is out of range 3..17"),
    ("server 192.0.2.1 minpoll 8 maxpoll 6", "minpoll 8 is greater than maxpoll 6"),
    ("server 192.0.2.1 minpoll x", "minpoll must be an integer"),
    ("server 192.0.2.1 minpoll", "option 'minpoll' needs a value"),
    ("server 192.0.2.1 key 0", "key 0 is out of range 1..65535"),
    ("server 192.0.2.1 key 65536", "key 65536 is out of range 1..65535"),
    ("server 192.0.2.1 version 5", "version 5 is out of range 1..4"),
    ("server 192.0.2.1 ttl 256", "ttl 256 is out of range"),
    ("server 192.0.2.1 port 0", "port 0 is out of range"),
    ("server 192.0.2.1 key 5 autokey", "mutually exclusive"),
    ("server 192.0.2.1 fast", "unknown server option 'fast'"),
    ("peer 192.0.2.1 xleave", "peer option 'xleave' is not supported"),
    ("server 192.0.2.1 ident", "option 'ident' needs a value"),
    ("server", "server needs an address"),
    ("server 300.1.2.3", "invalid address '300.1.2.3'"),
    ("server bad_name!", "invalid address"),
])
def test_association_errors(line: str, message: str) -> None:
    """Bad association lines raise ConfigError naming the file and line."""
    error = error_of(f"# first\n{line}\n")
    assert (error.path, error.line) == ("ntp.conf", 2)
    assert message in error.message
    assert str(error) == f"ntp.conf:2: {error.message}"


# -- the local clock ----------------------------------------------------------------------


def test_local_refclock_defaults() -> None:
    """``server 127.127.1.0`` alone is ntpd's LOCAL clock: stratum 5, refid LOCL, poll 6."""
    config = parse_config("server 127.127.1.0")
    assert config.refclocks == (RefclockConfig(address="127.127.1.0", line=1),)
    assert config.associations == ()


def test_fudge_merges_into_its_refclock() -> None:
    """fudge stratum/refid change the refclock defined on the earlier server line."""
    config = parse_config("server 127.127.1.1 prefer minpoll 4\n"
                          "fudge 127.127.1.1 stratum 2 refid GPS\n")
    assert config.refclocks == (RefclockConfig(address="127.127.1.1", stratum=2, refid="GPS",
                                               prefer=True, minpoll=4, maxpoll=6, line=1),)


@pytest.mark.parametrize(("text", "line", "message"), [
    ("server 127.127.20.0", 1, "reference clock driver 20 is not supported"),
    ("fudge 127.127.1.0 stratum 3\nserver 127.127.1.0", 1, "must follow its 'server"),
    ("server 127.127.1.0\nfudge 127.127.1.1 stratum 3", 2, "unknown reference clock"),
    ("fudge 192.0.2.1 stratum 3", 1, "fudge needs a reference clock address"),
    ("server 127.127.1.0\nfudge 127.127.1.0 stratum 16", 2, "stratum 16 is out of range 0..15"),
    ("server 127.127.1.0\nfudge 127.127.1.0 refid TOOLONG", 2, "refid must be 1 to 4"),
    ("server 127.127.1.0\nfudge 127.127.1.0 time1 0.5", 2, "'time1' is not supported"),
    ("server 127.127.1.0\nfudge 127.127.1.0 flavour 1", 2, "unknown fudge option"),
    ("server 127.127.1.0 key 3", 1, "'key' is not valid for a reference clock"),
    ("peer 127.127.1.0", 1, "can only be configured with 'server'"),
    ("server 127.127.1.0\nserver 127.127.1.0", 2, "already configured (line 1)"),
    ("localclock\nserver 127.127.1.0", 2, "already configured (line 1)"),
])
def test_refclock_errors(text: str, line: int, message: str) -> None:
    """Unsupported drivers, orphan fudges and bad fudge values are errors on their line."""
    error = error_of(text)
    assert error.line == line
    assert message in error.message


@pytest.mark.parametrize(("text", "stratum", "refid"), [
    ("localclock stratum 1", 0, "LOCL"),
    ("localclock stratum 4 refid HOME", 3, "HOME"),
    ("localclock stratum 15", 14, "LOCL"),
    ("localclock", 5, "LOCL"),
])
def test_localclock_stratum_is_the_host_stratum(text: str, stratum: int, refid: str) -> None:
    """``localclock stratum N`` makes the host serve N: the refclock itself sits at N-1."""
    (refclock,) = parse_config(text).refclocks
    assert (refclock.address, refclock.stratum, refclock.refid) == ("127.127.1.0", stratum,
                                                                   refid)


@pytest.mark.parametrize("text", ["localclock stratum 0", "localclock stratum 16",
                                  "localclock prefer", "localclock stratum"])
def test_localclock_errors(text: str) -> None:
    """The host stratum is 1..15 and only stratum/refid are accepted."""
    assert error_of(text).line == 1


# -- broadcast client, files, keys ----------------------------------------------------


def test_broadcast_client_and_delay() -> None:
    """broadcastclient and ``enable bclient`` set broadcast_client; delay is in seconds."""
    config = parse_config("broadcastclient\nbroadcastdelay 0.004\n")
    assert config.broadcast_client and config.broadcast_delay == 0.004
    assert parse_config("enable bclient").broadcast_client
    assert not parse_config("broadcastclient\ndisable bclient").broadcast_client
    assert "bclient" not in parse_config("enable bclient").enabled


@pytest.mark.parametrize("text", ["broadcastdelay -1", "broadcastdelay soon", "broadcastdelay",
                                  "broadcastdelay nan", "broadcastclient 1.2.3.4"])
def test_broadcast_errors(text: str) -> None:
    """broadcastdelay needs one non-negative number; broadcastclient takes no address."""
    assert error_of(text).line == 1


def test_relative_paths_resolve_against_the_config_directory(tmp_path: Path) -> None:
    """keys, driftfile, leapfile and keysdir are relative to the config file's directory."""
    conf = tmp_path / "etc" / "ntp.conf"
    conf.parent.mkdir()
    conf.write_text("keys ntp.keys\ndriftfile ../var/drift\nleapfile /abs/leap.list\n"
                    "keysdir keys/\n")
    config = load_config(conf)
    assert config.keys_file == str(tmp_path / "etc" / "ntp.keys")
    assert config.driftfile == str(tmp_path / "var" / "drift")
    assert config.leapfile == "/abs/leap.list"
    assert config.keysdir == str(tmp_path / "etc" / "keys")


def test_paths_of_a_string_config_stay_as_written() -> None:
    """Without a real file name relative paths are left alone."""
    assert parse_config("keys ntp.keys").keys_file == "ntp.keys"


def test_trustedkey_singles_and_ranges() -> None:
    """trustedkey accepts IDs and ntpd's ``(LOW ... HIGH)`` ranges, across lines."""
    config = parse_config("trustedkey 1 (10 ... 12) 20\ntrustedkey ( 30 ... 31 )\n")
    assert config.trusted_keys == frozenset({1, 10, 11, 12, 20, 30, 31})
    ntpd_example = parse_config("trustedkey (1 ... 19) 1000 (100 ... 199)").trusted_keys
    assert ntpd_example == frozenset({*range(1, 20), 1000, *range(100, 200)})
    assert len(ntpd_example) == 120  # the count authopt.md gives for this example


@pytest.mark.parametrize(("text", "message"), [
    ("trustedkey", "at least one key ID"),
    ("trustedkey 0", "key ID 0 is out of range 1..65535"),
    ("trustedkey (5 ... 1)", "is empty"),
    ("trustedkey (1 .. 5)", "malformed key ID range"),
    ("trustedkey (1 ... 5", "malformed key ID range"),
    ("trustedkey 1...5", "must be an integer"),
])
def test_trustedkey_errors(text: str, message: str) -> None:
    """Bad key IDs and ranges are rejected."""
    assert message in error_of(text).message


def test_crypto_options_merge_across_lines() -> None:
    """crypto options fill CryptoConfig; a later crypto line overrides individual options."""
    config = parse_config("crypto\n"
                          "crypto cert c.pem digest SHA1 host alice ident grp pw secret\n"
                          "crypto randfile rnd pw other\n")
    assert config.crypto == CryptoConfig(cert="c.pem", digest="SHA1", host="alice",
                                         ident="grp", pw="other", randfile="rnd")
    assert parse_config("crypto").crypto == CryptoConfig()


@pytest.mark.parametrize(("text", "message"), [
    ("crypto leap x", "unknown crypto option 'leap'"),
    ("crypto pw", "option 'pw' needs a value"),
    ("crypto digest RIPEMD160", "crypto digest 'RIPEMD160' is not supported"),
    ("automax 0", "automax 0 is out of range"),
    ("revoke", "revoke needs an argument"),
    ("ident a b", "unexpected 'b'"),
    ("keys", "keys needs an argument"),
])
def test_autokey_directive_errors(text: str, message: str) -> None:
    """Autokey and key-file directives validate their arguments."""
    assert message in error_of(text).message


def test_autokey_directives() -> None:
    """automax, revoke, ident and keysdir are stored."""
    config = parse_config("automax 10\nrevoke 16\nident group1\nkeysdir /etc/ntp/\n")
    assert (config.automax, config.revoke, config.ident) == (10, 16, "group1")
    assert config.keysdir == "/etc/ntp/"


# -- access control, interfaces, flags --------------------------------------------------


def test_restrict_lines() -> None:
    """restrict default/-6 default/address mask with flags, in order."""
    config = parse_config("restrict default kod limited nomodify notrap nopeer noquery\n"
                          "restrict -6 default ignore\n"
                          "restrict 192.0.2.0 mask 255.255.255.0 nomodify\n"
                          "restrict 2001:db8:: mask ffff:ffff:: noserve\n"
                          "restrict 127.0.0.1\n")
    assert config.restrictions == (
        RestrictConfig(None, None, frozenset({"kod", "limited", "nomodify", "notrap", "nopeer",
                                              "noquery"}), line=1),
        RestrictConfig(None, None, frozenset({"ignore"}), ipv6=True, line=2),
        RestrictConfig("192.0.2.0", "255.255.255.0", frozenset({"nomodify"}), line=3),
        RestrictConfig("2001:db8::", "ffff:ffff::", frozenset({"noserve"}), ipv6=True, line=4),
        RestrictConfig("127.0.0.1", None, frozenset(), line=5),
    )


def test_restrict_source_is_warned_and_ignored() -> None:
    """``restrict source`` is a known ntpd form that ntpauto ignores with a warning."""
    config = parse_config("restrict source nomodify", "r.conf")
    assert config.restrictions == ()
    assert config.warnings == ("r.conf:1: ntpd directive 'restrict source' is not supported "
                               "by ntpauto; ignored",)


@pytest.mark.parametrize(("text", "message"), [
    ("restrict default nofun", "unknown restrict flag 'nofun'"),
    ("restrict", "needs 'default' or an address"),
    ("restrict default mask 255.0.0.0", "'mask' cannot be used with 'default'"),
    ("restrict 10.0.0.0 mask 255.0.255.0", "not a contiguous netmask"),
    ("restrict 10.0.0.0 mask ffff::", "invalid mask"),
    ("restrict 10.0.0.0 nomodify mask 255.0.0.0", "right after the address"),
    ("restrict -6 10.0.0.1", "is not an IPv6 address"),
    ("restrict -4 ::1", "is not an IPv4 address"),
    ("restrict ntp.example.org", "numeric IP address"),
])
def test_restrict_errors(text: str, message: str) -> None:
    """Unknown flags and malformed addresses or masks are rejected."""
    assert message in error_of(text).message


def test_interface_listen_and_ignored_forms() -> None:
    """interface listen is honoured; ignore/drop are accepted with a warning."""
    config = parse_config("interface ignore wildcard\ninterface listen 192.0.2.1\n"
                          "interface drop ipv6\ninterface listen ::1\n", "i.conf")
    assert config.listen == (ListenConfig("192.0.2.1", line=2), ListenConfig("::1", line=4))
    assert len(config.warnings) == 2
    assert config.warnings[0].startswith("i.conf:1: 'interface ignore'")
    assert "only 'interface listen' is honoured" in config.warnings[1]


@pytest.mark.parametrize(("text", "message"), [
    ("interface listen eth0", "needs an IP address"),
    ("interface listen", "needs an argument"),
    ("interface bind 1.2.3.4", "unknown interface action"),
    ("interface", "needs 'listen'"),
])
def test_interface_errors(text: str, message: str) -> None:
    """Only IP literals can be listened on."""
    assert message in error_of(text).message


def test_port_directive() -> None:
    """``port N`` sets our listening port; out-of-range values are errors."""
    assert parse_config("port 12300").port == 12300
    assert "port 70000 is out of range" in error_of("port 70000").message
    assert error_of("port").line == 1


def test_rcvbuf_directive() -> None:
    """``rcvbuf BYTES`` sets the UDP receive buffer; 0 keeps the system's; without the
    directive the default is asked for."""
    assert parse_config("rcvbuf 1048576").receive_buffer == 1048576
    assert parse_config("rcvbuf 0").receive_buffer == 0
    assert parse_config("").rcvbuf is None
    assert parse_config("").receive_buffer == DEFAULT_RCVBUF == 4 << 20


@pytest.mark.parametrize(("text", "message"), [
    ("rcvbuf", "rcvbuf needs an argument"),
    ("rcvbuf 4M", "rcvbuf must be a number of bytes, not '4M'"),
    ("rcvbuf 100", "rcvbuf 100 is out of range: 0 (the system's default) or 4096.."),
    ("rcvbuf -1", "rcvbuf -1 is out of range"),
    ("rcvbuf 2147483648", "rcvbuf 2147483648 is out of range"),
    ("rcvbuf 65536 65536", "unexpected '65536' after rcvbuf"),
])
def test_rcvbuf_errors(text: str, message: str) -> None:
    """A bad receive buffer size names the file and line."""
    error = error_of("port 123\n" + text)
    assert (error.path, error.line) == ("ntp.conf", 2)
    assert message in error.message


def test_enable_and_disable_flags() -> None:
    """enable ntp turns the discipline on; disable removes defaults; unknown flags fail."""
    config = parse_config("enable ntp stats\ndisable monitor kernel\n")
    assert config.enabled == frozenset({"auth", "ntp", "stats"})
    assert config.discipline_enabled
    assert not parse_config("enable ntp\ndisable ntp").discipline_enabled
    assert "unknown enable flag 'pps'" in error_of("enable pps").message
    assert "needs at least one flag" in error_of("disable").message


def test_discard() -> None:
    """discard average/minimum are stored; monitor is accepted with a warning."""
    config = parse_config("discard average 5 minimum 2 monitor 3000")
    assert (config.discard_average, config.discard_minimum) == (5, 2)
    assert any("'discard monitor'" in w for w in config.warnings)
    assert "unknown discard option 'burst'" in error_of("discard burst 1").message
    assert "needs a value" in error_of("discard average").message
    assert error_of("discard").line == 1
    assert "out of range" in error_of("discard average 18").message


# -- syntax, includes, unsupported and unknown directives ---------------------------------


def test_comments_blank_lines_and_quotes() -> None:
    """``#`` starts a comment anywhere outside quotes; a quoted string is one token."""
    config = parse_config('\n   \n# c\nserver 192.0.2.1 iburst # trailing\n'
                          'crypto pw "two words#x"\n')
    assert config.associations[0].iburst and config.associations[0].line == 4
    assert config.crypto == CryptoConfig(pw="two words#x")
    assert "unterminated quoted string" in error_of('crypto pw "open').message


@pytest.mark.parametrize("directive", [
    "tinker panic 0", "tos floor 0", "statsdir /var/log/ntp", "statistics peerstats",
    "filegen peerstats file peerstats", "logfile /var/log/ntp.log", "logconfig =all",
    "pool pool.ntp.org iburst", "manycastserver 224.0.1.1", "manycastclient 224.0.1.1",
    "multicastclient 224.0.1.1", "controlkey 1", "requestkey 1", "setvar a = b",
    "trap 192.0.2.1", "phone 555", "mru maxage 64", "nic ignore all", "rlimit memlock 32",
    "saveconfigdir /tmp", "pidfile /run/ntpd.pid", "unpeer 192.0.2.1",
])
def test_unsupported_ntpd_directives_warn(directive: str) -> None:
    """Known ntpd directives that ntpauto does not implement are ignored with a warning."""
    config = parse_config(f"\n{directive}\n", "u.conf")
    name = directive.split()[0]
    assert config.warnings == (f"u.conf:2: ntpd directive '{name}' is not supported by "
                               "ntpauto; ignored",)
    assert config.associations == ()


def test_unknown_directive_is_an_error() -> None:
    """Anything that is not an ntpd directive is a typo to report, with file and line."""
    error = error_of("server 192.0.2.1\nsevrer 192.0.2.2\n", "/etc/ntp.conf")
    assert str(error) == "/etc/ntp.conf:2: unknown directive 'sevrer'"


def test_includefile_is_relative_and_reports_its_own_lines(tmp_path: Path) -> None:
    """includefile is resolved against the including file; it feeds the same config."""
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "servers.conf").write_text("server 192.0.2.1\ntinker step 0\n")
    main = tmp_path / "ntp.conf"
    main.write_text("includefile conf.d/servers.conf\nserver 192.0.2.2\n")
    config = load_config(main)
    assert [(a.address, a.line) for a in config.associations] == [("192.0.2.1", 1),
                                                                  ("192.0.2.2", 2)]
    assert config.warnings[0].startswith(f"{tmp_path / 'conf.d' / 'servers.conf'}:2: ")


def test_error_inside_include_names_the_included_file(tmp_path: Path) -> None:
    """A bad line in an included file is reported against that file and line."""
    (tmp_path / "bad.conf").write_text("# ok\nserver 192.0.2.1 minpoll 99\n")
    main = tmp_path / "ntp.conf"
    main.write_text("driftfile drift\nincludefile bad.conf\n")
    with pytest.raises(ConfigError) as info:
        load_config(main)
    assert (info.value.path, info.value.line) == (str(tmp_path / "bad.conf"), 2)


def test_include_loop_is_detected(tmp_path: Path) -> None:
    """a includes b includes a: an error instead of infinite recursion."""
    (tmp_path / "a.conf").write_text("includefile b.conf\n")
    (tmp_path / "b.conf").write_text("port 4000\nincludefile a.conf\n")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "a.conf")
    assert info.value.path == str(tmp_path / "b.conf") and info.value.line == 2
    assert "include loop" in info.value.message


def test_missing_include_is_reported_at_the_include_line(tmp_path: Path) -> None:
    """An unreadable included file is an error on the includefile line."""
    main = tmp_path / "ntp.conf"
    main.write_text("\nincludefile nope.conf\n")
    with pytest.raises(ConfigError) as info:
        load_config(main)
    assert (info.value.path, info.value.line) == (str(main), 2)
    assert "cannot read included file" in info.value.message


def test_missing_config_file(tmp_path: Path) -> None:
    """A missing file is a ConfigError at line 0 whose text has no line number."""
    missing = tmp_path / "ntp.conf"
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    assert (info.value.path, info.value.line) == (str(missing), 0)
    assert str(info.value).startswith(f"{missing}: cannot read configuration: ")


def test_documented_examples_parse() -> None:
    """The configuration examples in docs/configuration.md are valid ntpauto configs."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text()
    complete = doc.split("## A complete example", 1)[1].split("```")[1].removeprefix("text\n")
    config = parse_config(complete, "/etc/ntpauto/ntp.conf")
    assert config.warnings == ()
    assert config.discipline_enabled and config.trusted_keys == frozenset({5})
    assert config.keys_file == "/etc/ntpauto/ntp.keys"
    assert config.refclocks[0].stratum == 9
    default = doc.split("## The default configuration", 1)[1].split("```")[1].removeprefix("text\n")
    parsed = parse_config(default)
    assert attrs.evolve(parsed, path="<default>",
                        listen=tuple(attrs.evolve(item, line=0) for item in parsed.listen),
                        refclocks=tuple(attrs.evolve(r, line=0) for r in parsed.refclocks),
                        restrictions=tuple(attrs.evolve(r, line=0)
                                           for r in parsed.restrictions)) == default_config()
