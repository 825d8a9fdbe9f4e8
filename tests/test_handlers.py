"""Command handling without sockets: a Hub, Users whose output lands in lists, and dispatch."""

from __future__ import annotations

import pytest

from ircchat.handlers import dispatch
from ircchat.protocol import parse_message
from ircchat.state import Hub, ServerConfig, User, liveness_actions


class Client:
    """A User wired to lists instead of a connection."""

    def __init__(self, hub: Hub, host: str = "10.0.0.1") -> None:
        self.hub = hub
        self.lines: list[str] = []
        self.dropped: list[str] = []
        self.user = User(host=host, deliver=self._deliver, disconnect=self.dropped.append)
        hub.add(self.user)

    def _deliver(self, data: bytes) -> None:
        # One delivery may carry several lines (a NAMES reply goes out in one piece).
        assert data.endswith(b"\r\n")
        for line in data[:-2].split(b"\r\n"):
            assert len(line) <= 510
            self.lines.append(line.decode())

    def do(self, *lines: str) -> list[str]:
        """Dispatch lines as if they came from this client; return what it was sent."""
        start = len(self.lines)
        for line in lines:
            dispatch(self.hub, self.user, parse_message(line))
        return self.lines[start:]

    def take(self) -> list[str]:
        lines, self.lines = self.lines, []
        return lines


def numerics(lines: list[str]) -> list[str]:
    return [parse_message(line).command for line in lines]


@pytest.fixture
def hub() -> Hub:
    return Hub(ServerConfig(server_name="irc.test", room="#chat"))


def registered(hub: Hub, nick: str) -> Client:
    client = Client(hub)
    client.do(f"NICK {nick}", f"USER {nick.lower()} 0 * :{nick} Real")
    assert client.user.registered
    client.take()
    return client


def test_registration_sends_welcome_isupport_motd_and_auto_joins(hub):
    client = Client(hub)
    assert client.do("NICK ann") == []
    out = client.do("USER ann 0 * :Ann Example")
    assert numerics(out)[:5] == ["001", "002", "003", "004", "005"]
    isupport = next(line for line in out if " 005 " in line)
    for token in ("NICKLEN=20", "CASEMAPPING=ascii", "CHANTYPES=#"):
        assert token in isupport.split()
    assert "375" in numerics(out) and "376" in numerics(out)
    assert ":ann!~ann@10.0.0.1 JOIN :#chat" in out
    assert out[-2:] == [":irc.test 353 ann = #chat :ann", ":irc.test 366 ann #chat :End of /NAMES list"]


def test_user_before_nick_also_registers(hub):
    client = Client(hub)
    client.do("USER x 0 * :X")
    assert not client.user.registered
    client.do("NICK xavier")
    assert client.user.registered


def test_cap_negotiation_holds_registration_until_cap_end(hub):
    client = Client(hub)
    assert client.do("CAP LS 302") == [
        ":irc.test CAP * LS :away-notify batch cap-notify echo-message extended-join labeled-response message-tags multi-prefix server-time"]
    client.do("NICK ann", "USER ann 0 * :Ann")
    assert not client.user.registered
    assert client.do("CAP REQ :server-time sasl") == [":irc.test CAP ann NAK :server-time sasl"]
    assert client.do("CAP REQ :server-time echo-message") == [":irc.test CAP ann ACK :server-time echo-message"]
    assert client.do("CAP REQ :-echo-message", "CAP LIST")[-1] == ":irc.test CAP ann LIST :server-time"
    client.do("CAP END")
    assert client.user.registered


def test_empty_motd_gives_422():
    hub = Hub(ServerConfig(motd=()))
    client = Client(hub)
    out = client.do("NICK ann", "USER a 0 * :A")
    assert "422" in numerics(out) and "375" not in numerics(out)


@pytest.mark.parametrize("nick", ["ab", "a" * 21, "ann-1", "änn", "a b", "[ann]"])
def test_invalid_nicks_get_432_and_can_retry(hub, nick):
    client = Client(hub)
    out = client.do(f"NICK :{nick}")
    assert numerics(out) == ["432"]
    client.do("NICK good_nick", "USER g 0 * :G")
    assert client.user.registered


def test_nick_taken_regardless_of_case_gets_433(hub):
    registered(hub, "Ann")
    other = Client(hub)
    assert numerics(other.do("NICK aNN")) == ["433"]
    other.do("NICK bob", "USER b 0 * :B")
    assert other.user.nick == "bob" and other.user.registered


def test_commands_before_registration_get_451_but_ping_works(hub):
    client = Client(hub)
    assert numerics(client.do("PRIVMSG #chat :hi")) == ["451"]
    assert numerics(client.do("FOO")) == ["451"]
    assert client.do("PING :tok") == [":irc.test PONG irc.test :tok"]


def test_unknown_command_421_and_missing_params_461(hub):
    ann = registered(hub, "ann")
    assert numerics(ann.do("FROB x")) == ["421"]
    assert numerics(ann.do("JOIN")) == ["461"]
    assert numerics(ann.do("USER a 0 *")) == ["461"]
    assert numerics(ann.do("USER a 0 * :again")) == ["462"]
    assert numerics(ann.do("PRIVMSG")) == ["411"]
    assert numerics(ann.do("PRIVMSG #chat")) == ["412"]


def test_channel_message_reaches_every_other_member_not_the_sender(hub):
    ann, bob, cat = (registered(hub, n) for n in ("ann", "bob", "cat"))
    for c in (ann, bob, cat):
        c.take()
    assert ann.do("PRIVMSG #chat :hello there") == []
    assert bob.take() == [":ann!~ann@10.0.0.1 PRIVMSG #chat :hello there"]
    assert cat.take() == [":ann!~ann@10.0.0.1 PRIVMSG #chat :hello there"]


def test_private_message_and_401(hub):
    ann, bob, cat = (registered(hub, n) for n in ("ann", "bob", "cat"))
    for c in (ann, bob, cat):
        c.take()
    ann.do("PRIVMSG BOB :psst")
    assert bob.take() == [":ann!~ann@10.0.0.1 PRIVMSG BOB :psst"]
    assert cat.take() == []
    assert numerics(ann.do("PRIVMSG nobody :hi")) == ["401"]


def test_notice_never_answers_with_errors(hub):
    ann = registered(hub, "ann")
    assert ann.do("NOTICE nobody :hi", "NOTICE #nowhere :hi") == []


def test_multiple_targets_each_get_their_own_error(hub):
    ann, bob = registered(hub, "ann"), registered(hub, "bob")
    bob.take()
    out = ann.do("PRIVMSG nobody,bob,#nowhere :x")
    assert numerics(out) == ["401", "403"]
    assert len(bob.take()) == 1


def test_sending_to_a_channel_you_are_not_in_is_refused(hub):
    ann, bob = registered(hub, "ann"), registered(hub, "bob")
    bob.do("JOIN #side")
    assert numerics(ann.do("PRIVMSG #side :hi")) == ["404"]


def test_nick_change_is_announced_to_peers_once(hub):
    ann, bob = registered(hub, "ann"), registered(hub, "bob")
    bob.do("JOIN #side")
    ann.do("JOIN #side")
    bob.take()
    assert ann.do("NICK anna") == [":ann!~ann@10.0.0.1 NICK :anna"]
    assert bob.take() == [":ann!~ann@10.0.0.1 NICK :anna"]
    assert numerics(ann.do("NICK BOB")) == ["433"]
    assert ann.do("NICK ANNA") == [":anna!~ann@10.0.0.1 NICK :ANNA"]
    assert hub.find_user("anna") is ann.user


def test_join_part_names_and_channel_lifetime(hub):
    ann, bob = registered(hub, "ann"), registered(hub, "bob")
    out = ann.do("JOIN #side,bad")
    assert ":ann!~ann@10.0.0.1 JOIN :#side" in out and "403" in numerics(out)
    bob.do("JOIN #Side")
    assert ann.take()[-1] == ":bob!~bob@10.0.0.1 JOIN :#side"  # the name as first created
    names = ann.do("NAMES #side")
    assert names[0] == ":irc.test 353 ann = #side :@ann bob"  # its first member is its operator
    assert ann.do("PART #side :later") == [":ann!~ann@10.0.0.1 PART #side :later"]
    assert bob.take()[-1] == ":ann!~ann@10.0.0.1 PART #side :later"
    assert numerics(ann.do("PART #side")) == ["442"]
    bob.do("PART #side")
    assert hub.find_channel("#side") is None  # empty channels go away...
    ann.do("PART #chat")
    bob.do("PART #chat")
    assert hub.find_channel("#chat") is not None  # ...but the default room stays


def test_join_zero_parts_everything(hub):
    ann = registered(hub, "ann")
    ann.do("JOIN #a,#b")
    out = ann.do("JOIN 0")
    assert sorted(parse_message(line).params[0] for line in out) == ["#a", "#b", "#chat"]
    assert not ann.user.channels


def test_names_are_split_into_lines_that_fit():
    hub = Hub(ServerConfig())
    clients = [registered(hub, f"user_{i:03d}_xxxxxxxxx") for i in range(60)]
    out = clients[0].do("NAMES #chat")
    listed = [name for line in out if " 353 " in line for name in parse_message(line).params[-1].split()]
    assert len(listed) == 60 and len(out) > 2


def test_topic_set_query_and_broadcast(hub):
    ann, bob = registered(hub, "ann"), registered(hub, "bob")
    ann.take()
    assert numerics(ann.do("TOPIC #chat")) == ["331"]
    ann.do("TOPIC #chat :Plans for friday")
    assert bob.take() == [":ann!~ann@10.0.0.1 TOPIC #chat :Plans for friday"]
    assert numerics(bob.do("TOPIC #chat")) == ["332", "333"]
    cat = Client(hub)
    out = cat.do("NICK cat", "USER c 0 * :C")
    assert any(" 332 cat #chat :Plans for friday" in line for line in out)


def test_who_whois_mode_lusers_motd(hub):
    ann, bob = registered(hub, "ann"), registered(hub, "bob")
    who = ann.do("WHO #chat")
    assert numerics(who) == ["352", "352", "315"]
    assert ":irc.test 352 ann #chat ~bob 10.0.0.1 irc.test bob H :0 bob Real" in who
    whois = ann.do("WHOIS bob")
    assert numerics(whois) == ["311", "319", "312", "317", "318"]
    assert numerics(ann.do("WHOIS ghost")) == ["401", "318"]
    assert numerics(ann.do("MODE #chat")) == ["324", "329"]
    assert numerics(ann.do("MODE #chat b")) == ["368"]
    assert numerics(ann.do("MODE #chat +m")) == ["482"]
    assert ann.do("MODE ann +i") == [":ann!~ann@10.0.0.1 MODE ann :+i"]
    assert ann.do("MODE ann") == [":irc.test 221 ann :+i"]
    assert numerics(ann.do("MODE ann +z")) == ["501"]
    assert numerics(ann.do("MODE bob +i")) == ["502"]
    assert numerics(ann.do("LUSERS")) == ["251", "254", "255"]
    assert numerics(ann.do("MOTD")) == ["375", "372", "376"]


def test_quit_sets_reason_and_remove_tells_each_peer_once(hub):
    ann, bob = registered(hub, "ann"), registered(hub, "bob")
    registered(hub, "cat")
    ann.do("JOIN #side")
    bob.do("JOIN #side")
    ann.do("QUIT :see you")
    assert ann.user.quit_reason == "Quit: see you"
    ann.take(), bob.take()
    hub.remove(ann.user, b":ann!~ann@10.0.0.1 QUIT :Quit: see you\r\n")
    assert bob.take() == [":ann!~ann@10.0.0.1 QUIT :Quit: see you"]  # once, though in two channels
    assert ann.take() == []
    assert hub.find_user("ann") is None
    assert numerics(Client(hub).do("NICK ann")) == []  # the nick is free again


def test_liveness_pings_idle_users_and_drops_silent_and_unregistered_ones():
    hub = Hub(ServerConfig(ping_interval=10, ping_timeout=5, register_timeout=30))
    idle, silent, lurker = registered(hub, "idle"), registered(hub, "silent"), Client(hub)
    start = idle.user.last_seen
    silent.user.ping_sent = start + 11
    actions = dict(liveness_actions(hub, start + 17))
    assert actions[idle.user] == "ping"
    assert actions[silent.user].startswith("Ping timeout")
    assert lurker.user not in actions
    assert dict(liveness_actions(hub, lurker.user.connected + 31))[lurker.user] == "Registration timed out"


def test_lusers_counts_follow_registrations_and_quits(hub):
    ann, bob = registered(hub, "ann"), registered(hub, "bob")
    Client(hub).do("NICK lurker")  # connected, not registered
    assert ":irc.test 251 ann :There are 2 users and 0 invisible on 1 servers" in ann.do("LUSERS")
    hub.remove(bob.user)
    hub.remove(bob.user)  # removing twice changes nothing
    out = ann.do("LUSERS")
    assert ":irc.test 251 ann :There are 1 users and 0 invisible on 1 servers" in out
    assert ":irc.test 253 ann 1 :unknown connection(s)" in out


def test_names_lists_members_in_the_order_they_joined(hub):
    for nick in ("zed", "amy", "Mia"):
        registered(hub, nick)
    out = registered(hub, "bob").do("NAMES #chat")
    assert out[0] == ":irc.test 353 bob = #chat :zed amy Mia bob"
