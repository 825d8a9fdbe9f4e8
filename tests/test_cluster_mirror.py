"""Cluster mode without Redis: the Mirror applies other nodes' events to a Hub, and the Hub
asks its ClusterBus for nick claims. Users whose output lands in lists, as in test_handlers."""

from __future__ import annotations

import doctest
from typing import Any

from test_handlers import Client, numerics, registered

import ircchat.cluster
from ircchat.cluster import ClusterBus, Mirror, record
from ircchat.state import Hub, ServerConfig, User


class RefusingBus(ClusterBus):
    """A bus whose cluster holds every nick in ``taken``."""

    def __init__(self, taken: set[str]) -> None:
        self.taken = taken

    def claim_nick(self, user: User, nick: str) -> bool:
        return nick.lower() not in self.taken


def remote_record(nick: str, channels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"f": nick.lower(), "reg": True, "nick": nick, "user": "~far", "host": "far.cloak", "real": "Far Away",
            "signon": 0.0, "away": None, "modes": "", "ch": channels if channels is not None else {"#chat": ""}}


def mirror_of(hub: Hub) -> tuple[Mirror, list[tuple[str, dict[str, Any], bytes]]]:
    sent: list[tuple[str, dict[str, Any], bytes]] = []
    mirror = Mirror(hub, lambda node, event, line: sent.append((node, event, line)), lambda user: None,
                    lambda node, uid: None)
    return mirror, sent


def test_a_nick_the_cluster_holds_is_433_here():
    hub = Hub(ServerConfig(server_name="irc.test"), bus=RefusingBus({"zed"}))
    client = Client(hub)
    assert numerics(client.do("NICK Zed")) == ["433"]
    assert hub.find_user("zed") is None
    assert client.do("NICK amy") == []


def test_a_replica_is_listed_everywhere_but_never_delivered_to():
    hub = Hub(ServerConfig(server_name="irc.test", room="#chat"))
    mirror, sent = mirror_of(hub)
    ann = registered(hub, "ann")
    mirror.upsert("far", "1", remote_record("Bob"))
    assert ann.take() == [":Bob!~far@far.cloak JOIN :#chat"]
    assert " Bob" in " ".join(ann.do("NAMES #chat"))
    assert numerics(ann.do("WHOIS bob"))[0] == "311"
    assert "There are 2 users" in ann.do("LUSERS")[0]
    ann.do("PRIVMSG #chat :hello")
    assert sent == []  # the fan-out never reaches a replica
    ann.do("PRIVMSG bob :just you")
    assert [(node, event["t"]) for node, event, _ in sent] == [("far", "dm")]
    assert sent[0][2].endswith(b"PRIVMSG bob :just you\r\n")


def test_a_record_applied_again_changes_nothing_and_a_lost_node_quits_its_users():
    hub = Hub(ServerConfig(server_name="irc.test", room="#chat"))
    mirror, _ = mirror_of(hub)
    ann = registered(hub, "ann")
    mirror.upsert("far", "1", remote_record("Bob", {"#chat": "", "#side": "o"}))
    ann.take()
    mirror.upsert("far", "1", remote_record("Bob", {"#chat": "", "#side": "o"}))  # a rejoining node
    assert ann.take() == []
    assert hub.find_channel("#side").ops == {hub.find_user("bob")}
    mirror.lost("far")
    assert ann.take() == [":Bob!~far@far.cloak QUIT :node lost"]
    assert hub.find_user("bob") is None and hub.find_channel("#side") is None
    assert hub.counts()[:2] == (1, 1)


def test_events_move_a_replica_between_channels_and_nicks():
    hub = Hub(ServerConfig(server_name="irc.test", room="#chat"))
    mirror, _ = mirror_of(hub)
    ann = registered(hub, "ann")
    mirror.upsert("far", "1", remote_record("Bob"))
    ann.take()
    mirror.apply({"t": "nick", "n": "far", "u": "1", "nick": "Rob"}, b"", "1-0")
    mirror.apply({"t": "part", "n": "far", "u": "1", "c": "#chat", "r": ["bye"]}, b"", "2-0")
    assert ann.take() == [":Bob!~far@far.cloak NICK :Rob", ":Rob!~far@far.cloak PART #chat :bye"]
    line = mirror.apply({"t": "msg", "n": "far", "u": "1", "c": "#chat", "cmd": "PRIVMSG", "text": "hi"},
                        b":Rob!~far@far.cloak PRIVMSG #chat :hi\r\n", "1700000000000-3")
    assert line.entry.msgid == "1700000000000-3" and line.stamped.time_ms == 1700000000000
    assert record(ann.user)["ch"] == {"#chat": ""}


def test_doctests_pass():
    failures, tried = doctest.testmod(ircchat.cluster)
    assert tried > 0 and failures == 0


def test_a_kick_op_or_invite_crossing_its_targets_rename_acts_on_the_user_its_node_meant():
    """Node "op" kicked Bob, gave Bob +v and invited Bob back while Bob (node "far") became
    Rob and someone on node "new" took the nick Bob: the stream has the rename first. Here too
    the kick, the voice and the invitation go to Rob, the user they were meant for, never to
    the new Bob."""
    hub = Hub(ServerConfig(server_name="irc.test", room="#chat"))
    mirror, _ = mirror_of(hub)
    registered(hub, "ann")
    mirror.upsert("op", "1", remote_record("Kop", {"#chat": "", "#side": "o"}))
    mirror.upsert("far", "1", remote_record("Bob", {"#chat": "", "#side": "", "#more": ""}))
    mirror.apply({"t": "nick", "n": "far", "u": "1", "nick": "Rob"}, b"", "1-0")
    mirror.upsert("new", "1", remote_record("Bob", {"#chat": "", "#side": "", "#more": ""}))
    mirror.apply({"t": "mode", "n": "op", "u": "1", "c": "#side", "m": [["+", "v", "Bob"]],
                  "refs": [["far", "1"]]}, b"", "2-0")
    mirror.apply({"t": "kick", "n": "op", "u": "1", "c": "#side", "k": "Bob", "ref": ["far", "1"], "r": ""},
                 b"", "3-0")
    mirror.apply({"t": "invite", "n": "op", "u": "1", "c": "#side", "k": "Bob", "ref": ["far", "1"]}, b"", "4-0")
    side = hub.find_channel("#side")
    assert list(side.invited) == [hub.find_user("rob")]
    rob, new_bob = hub.find_user("rob"), hub.find_user("bob")
    assert rob not in side.members and new_bob in side.members
    assert new_bob not in side.voiced


def test_a_change_its_node_allowed_is_applied_here_though_a_crossing_deop_came_first():
    """Kop (node "op") took Yan's +o while Yan (node "far") set +m, kicked Zed, set the
    topic under +t and invited ann under +i: on Yan's node these took, before the deop. Here the stream has the deop
    first; the changes take here too, or the nodes would disagree for good."""
    hub = Hub(ServerConfig(server_name="irc.test", room="#chat"))
    mirror, _ = mirror_of(hub)
    registered(hub, "ann")
    mirror.upsert("op", "1", remote_record("Kop", {"#chat": "", "#side": "o"}))
    mirror.upsert("far", "1", remote_record("Yan", {"#chat": "", "#side": "o"}))
    mirror.upsert("far", "2", remote_record("Zed", {"#chat": "", "#side": ""}))
    mirror.apply({"t": "mode", "n": "op", "u": "1", "c": "#side",
                  "m": [["+", "t", None], ["+", "i", None], ["-", "o", "Yan"]], "refs": [None, None, ["far", "1"]]},
                 b"", "1-0")
    mirror.apply({"t": "mode", "n": "far", "u": "1", "c": "#side", "m": [["+", "m", None]], "refs": [None]},
                 b"", "2-0")
    mirror.apply({"t": "kick", "n": "far", "u": "1", "c": "#side", "k": "Zed", "ref": ["far", "2"], "r": ""},
                 b"", "3-0")
    mirror.apply({"t": "msg", "n": "far", "u": "1", "c": "#side", "cmd": "TOPIC", "text": "new"},
                 b":Yan!~far@far.cloak TOPIC #side :new\r\n", "1700000000000-4")
    mirror.apply({"t": "invite", "n": "far", "u": "1", "c": "#side", "k": "ann", "ref": None}, b"", "5-0")
    side = hub.find_channel("#side")
    assert side.modes >= {"m", "t"} and list(side.invited) == [hub.find_user("ann")]
    assert hub.find_user("zed") not in side.members
    assert side.topic == "new"
