"""The chat state (curses_client.model, .handle, .commands): IRC messages and commands in,
entries and lines out."""

from ircchat.protocol import parse_message
from curses_client import commands
from curses_client.entries import Kind
from curses_client.handle import handle
from curses_client.model import AUTOJOIN_TOKEN, ChatState, Phase, split_text


def registered(nick="alice", auto_join=True):
    state = ChatState("host:1", "#chat", nick)
    sent = state.connected().send
    assert sent == ["CAP LS 302", "NICK :alice", "USER alice 0 * :alice"]
    feed(state, f":srv 001 {nick} :Welcome {nick}")
    if auto_join:
        feed(state, f":{nick}!u@h JOIN #chat", f":srv 353 {nick} = #chat :{nick} @bob carol",
             f":srv 366 {nick} #chat :End")
    return state


def members(state, room="#chat"):
    return sorted(nick for _, nick in state.window_of(room).members.values())


def feed(state, *lines):
    entries, sent = [], []
    for line in lines:
        reaction = handle(state, parse_message(line))
        entries += reaction.entries
        sent += reaction.send
    return entries, sent


def test_registration_and_auto_join_by_our_server():
    state = registered()
    assert state.phase is Phase.ONLINE and state.window_of("#chat").joined
    assert members(state) == ["alice", "bob", "carol"]
    assert state.online_count == 3
    _, sent = feed(state, f":srv PONG srv :{AUTOJOIN_TOKEN}")
    assert sent == []  # already in the room: no JOIN


def test_joins_the_room_itself_when_the_server_does_not():
    state = registered(auto_join=False)
    _, sent = feed(state, f":srv PONG srv :{AUTOJOIN_TOKEN}")
    assert sent == ["JOIN :#chat"]


def test_welcome_sends_the_autojoin_probe():
    state = ChatState("h", "#chat", "alice")
    state.connected()
    _, sent = feed(state, ":srv 001 alice :hi")
    assert sent == [f"PING :{AUTOJOIN_TOKEN}"]


def test_ping_is_answered():
    state = registered()
    assert feed(state, "PING :abc")[1] == ["PONG :abc"]


def test_nick_in_use_before_registration_brings_the_prompt_back():
    state = ChatState("h", "#chat")
    state.connected()
    assert state.needs_nick
    reaction = state.choose_nick("bad name!")
    assert state.needs_nick and reaction.send == [] and reaction.entries[0].kind is Kind.ERROR
    assert state.choose_nick("alice").send == ["NICK :alice", "USER alice 0 * :alice"]
    entries, _ = feed(state, ":srv 433 * alice :Nickname is already in use")
    assert state.needs_nick and "already in use" in state.nick_problem
    assert state.choose_nick("alice2").send == ["NICK :alice2"]  # USER went already


def test_nick_in_use_after_registration_is_just_an_error():
    state = registered()
    entries, _ = feed(state, ":srv 433 alice bob :Nickname is already in use")
    assert not state.needs_nick and entries[0].kind is Kind.ERROR


def test_chat_action_private_notice_join_part_quit_nick():
    state = registered()
    entries, _ = feed(
        state,
        ":bob!u@h PRIVMSG #chat :hello",
        ":bob!u@h PRIVMSG #chat :\x01ACTION waves\x01",
        ":bob!u@h PRIVMSG alice :psst",
        ":bob!u@h NOTICE alice :note",
        ":dave!u@h JOIN #chat",
        ":dave!u@h PART #chat :bye",
        ":carol!u@h QUIT :Quit: gone",
        ":bob!u@h NICK :robert",
        ":alice!u@h NICK :alicia",
    )
    kinds = [entry.kind for entry in entries]
    # each nick change is said in every window it concerns: the room, and bob's conversation /
    # alice's server window
    assert kinds == [Kind.CHAT, Kind.ACTION, Kind.PRIVATE_IN, Kind.NOTICE, Kind.JOIN, Kind.PART, Kind.QUIT,
                     Kind.NICK, Kind.NICK, Kind.NICK, Kind.NICK]
    assert [window.name for window in state.windows.windows] == ["host:1", "#chat", "robert"]
    assert entries[1].text == "waves"
    assert "Quit: gone" in entries[6].text
    assert members(state) == ["alicia", "robert"]
    assert state.nick == "alicia"


def test_network_text_is_sanitised():
    state = registered()
    entries, _ = feed(state, ":bob!u@h PRIVMSG #chat :\x1b]0;title\x07hi \x1b[31mred\x1b[0m \x02b\x02")
    assert entries[0].text == "hi red b"


def test_unknown_numerics_show_their_text_and_errors_look_like_errors():
    state = registered()
    entries, _ = feed(state, ":srv 999 alice some :thing odd", ":srv 482 alice #chat :not allowed",
                      ":srv 438 alice rob2 :Nick change too fast")
    assert entries[0].kind is Kind.INFO and entries[0].text == "some thing odd"
    assert entries[1].kind is Kind.ERROR and entries[1].text == "You are not a room operator in #chat."
    assert entries[2].kind is Kind.ERROR and entries[2].text == "rob2: Nick change too fast"
    assert not any(entry.text[:3].isdigit() for entry in entries)  # never a raw numeric


def test_error_from_server():
    entries, _ = feed(registered(), "ERROR :Closing Link: bye")
    assert entries[0].kind is Kind.ERROR and "Closing Link" in entries[0].text


def test_user_commands_become_irc_lines():
    state = registered()
    say = commands.run(state, "hi all")
    assert say.send == ["PRIVMSG #chat :hi all"] and say.entries[0].kind is Kind.OWN
    assert commands.run(state, "/me waves").send == ["PRIVMSG #chat :\x01ACTION waves\x01"]
    private = commands.run(state, "/msg bob psst")
    assert private.send == ["PRIVMSG bob :psst"] and private.entries[0].kind is Kind.PRIVATE_OUT
    assert commands.run(state, "/nick alicia").send == ["NICK :alicia"]
    assert commands.run(state, "/users").send == ["NAMES :#chat"]
    entries, _ = feed(state, ":srv 353 alice = #chat :alice @bob", ":srv 366 alice #chat :End")
    assert entries[0].text == "2 in #chat: alice, @bob"
    assert commands.run(state, "/dance").entries[0].kind is Kind.ERROR
    assert len(commands.run(state, "/help").entries) == len(set(commands.COMMANDS.values())) + len(commands.KEYS_HELP)


def test_typed_control_characters_never_reach_the_wire():
    state = registered()
    assert commands.run(state, "a\x00b\rc\x1b").send == ["PRIVMSG #chat :abc"]


def test_long_messages_are_split_under_the_line_limit():
    state = registered()
    sent = commands.run(state, "word " * 300).send
    assert len(sent) > 1 and all(len(line.encode()) <= 420 for line in sent)


def test_split_text_respects_utf8_boundaries():
    pieces = split_text("é" * 500, 101)
    assert all(len(piece.encode()) <= 101 for piece in pieces) and "".join(pieces) == "é" * 500


def test_nothing_is_sent_before_registration():
    state = ChatState("h", "#chat", "alice")
    reaction = commands.run(state, "too early")
    assert reaction.send == [] and reaction.entries[0].kind is Kind.ERROR


def test_disconnect_forgets_the_room_and_reconnect_registers_again():
    state = registered()
    entries = state.disconnected("reset").entries
    assert entries[0].kind is Kind.ERROR and state.phase is Phase.WAITING and state.online_count is None
    assert state.connected().send == ["CAP LS 302", "NICK :alice", "USER alice 0 * :alice"]


# -- password and transport ------------------------------------------------------------------


def test_password_goes_first_on_every_connection():
    state = ChatState("h", "#chat", "alice", password="pw")
    assert state.connected().send == ["CAP LS 302", "PASS :pw", "NICK :alice", "USER alice 0 * :alice"]
    state.disconnected("gone")
    assert state.connected().send[1] == "PASS :pw"


def test_password_goes_before_a_name_chosen_later():
    state = ChatState("h", "#chat", password="pw")
    assert state.connected().send == ["CAP LS 302", "PASS :pw"]
    assert state.choose_nick("alice").send == ["NICK :alice", "USER alice 0 * :alice"]


def test_464_asks_for_the_password_and_registration_waits_for_it():
    state = ChatState("h", "#chat", "alice", password="wrong")
    state.connected()
    entries, _ = feed(state, ":srv 464 alice :Password incorrect")
    assert state.needs_password and state.password is None
    assert entries[0].kind is Kind.ERROR
    assert entries[0].text.startswith("The server refused the password (Password incorrect).")
    state.disconnected("closed")
    assert state.connected().send == []  # nothing goes out while the user types
    assert state.choose_password("").entries[0].kind is Kind.ERROR and state.needs_password
    state.choose_password("right\x07")
    assert not state.needs_password
    state.disconnected("reconnecting")
    assert state.connected().send == ["CAP LS 302", "PASS :right", "NICK :alice", "USER alice 0 * :alice"]


def test_464_without_a_password_says_one_is_needed():
    state = ChatState("h", "#chat", "alice")
    state.connected()
    entries, _ = feed(state, ":srv 464 alice :Password incorrect")
    assert entries[0].text.startswith("The server needs a password")


def test_464_after_registration_is_only_an_error():
    state = registered()
    entries, _ = feed(state, ":srv 464 alice :nope")
    assert not state.needs_password and entries[0].text == "The password was refused (nope)."


def test_unverified_tls_is_a_warning_on_every_connection():
    from curses_client.model import Transport

    state = ChatState("h:6697", "#chat", "alice", transport=Transport.TLS_UNVERIFIED)
    entry = state.connected().entries[0]
    assert entry.kind is Kind.ERROR and "WITHOUT checking its certificate" in entry.text
    assert ChatState("h:6697", "#chat", transport=Transport.TLS).connected().entries[0].text == "Connected to h:6697 over TLS."


def test_a_refused_certificate_on_reconnection_is_shown_once_per_reason():
    state = registered()
    state.disconnected("gone")
    windows = len(state.windows.windows)  # the server's and #chat: said once in each
    assert len(state.refused("its TLS certificate could not be verified (x)").entries) == windows == 2
    assert state.refused("its TLS certificate could not be verified (x)").entries == []
    assert len(state.refused("its TLS certificate could not be verified (y)").entries) == windows


# -- IRCv3 and history -------------------------------------------------------------------------


def test_capabilities_are_asked_for_when_offered_and_registration_goes_on():
    state = ChatState("host:1", "#chat", "alice")
    state.connected()
    _, sent = feed(state, ":srv CAP * LS * :multi-prefix batch", ":srv CAP * LS :server-time sasl")
    assert sent == ["CAP REQ :batch server-time"]
    _, sent = feed(state, ":srv CAP alice ACK :batch server-time")
    assert sent == ["CAP END"] and state.caps == {"batch", "server-time"}
    other = ChatState("host:1", "#chat", "alice")
    other.connected()
    assert feed(other, ":srv CAP * LS :multi-prefix")[1] == ["CAP END"]
    assert feed(other, ":srv 421 alice CAP :Unknown command") == ([], [])  # no IRCv3: nothing to say


def history_state():
    state = registered()
    state.caps = frozenset({"batch", "server-time", "message-tags"})
    feed(state, ":srv 005 alice CHATHISTORY=100 MSGREFTYPES=msgid,timestamp :are supported")
    return state


def test_a_replay_batch_is_shown_dimmed_at_its_own_time_then_a_separator():
    state = history_state()
    entries, _ = feed(
        state, ":srv BATCH +r1 chathistory #chat",
        "@batch=r1;time=2023-11-14T22:13:20.000Z;msgid=m1 :bob!u@h PRIVMSG #chat :old news",
        "@batch=r1;time=2023-11-14T22:13:21.000Z;msgid=m2 :bob!u@h PRIVMSG #chat :\x01ACTION waves\x01",
        ":srv BATCH -r1", "@time=2023-11-14T22:14:00.000Z;msgid=m3 :bob!u@h PRIVMSG #chat :live")
    assert [(entry.text, entry.replayed, entry.when) for entry in entries[:2]] == [
        ("old news", True, 1700000000.0), ("waves", True, 1700000001.0)]
    assert entries[2].text == "─── live chat from here ───"
    assert (entries[3].text, entries[3].replayed, entries[3].when) == ("live", False, 1700000040.0)
    # The same lines replayed again (after a reconnection) are not shown twice.
    again, _ = feed(state, ":srv BATCH +r2 chathistory #chat",
                    "@batch=r2;msgid=m1 :bob!u@h PRIVMSG #chat :old news", ":srv BATCH -r2")
    assert again == []


def test_scrolling_past_the_oldest_asks_for_the_page_before_it_until_the_start():
    state = history_state()
    feed(state, ":srv BATCH +r1 chathistory #chat", "@batch=r1;msgid=m5 :bob!u@h PRIVMSG #chat :five",
         ":srv BATCH -r1")
    reaction = state.fetch_older()
    assert reaction.loading and reaction.send == ["CHATHISTORY BEFORE #chat msgid=m5 :50"]
    assert state.fetch_older().send == []  # one request at a time
    reaction = handle(state, parse_message(":srv BATCH +r2 chathistory #chat"))
    for line in ("@batch=r2;msgid=m3 :bob!u@h PRIVMSG #chat :three",
                 "@batch=r2;msgid=m4 :bob!u@h PRIVMSG #chat :four", ":srv BATCH -r2"):
        reaction = handle(state, parse_message(line))
    assert [entry.text for entry in reaction.older[1]] == ["three", "four"] and reaction.entries == []
    assert state.fetch_older().send == ["CHATHISTORY BEFORE #chat msgid=m3 :50"]
    handle(state, parse_message(":srv BATCH +r3 chathistory #chat"))
    reaction = handle(state, parse_message(":srv BATCH -r3"))
    assert reaction.older[1][0].text == "This is the start of #chat's history."
    assert state.fetch_older().send == []  # nothing older: never asked again


def test_no_history_on_the_server_means_no_request():
    state = registered()  # no CHATHISTORY in 005, no caps
    assert state.fetch_older().send == [] and not state.fetch_older().loading


# -- the lifecycle -------------------------------------------------------------------------------


def test_the_phase_moves_only_along_the_transition_table():
    import pytest

    from curses_client.model import TRANSITIONS, BadTransition, Step

    state = ChatState("h", "#chat")
    assert state.phase is Phase.CONNECTING
    state.connected()
    assert state.phase is Phase.ASKING_NAME and state.needs_nick  # no name given yet
    state.choose_nick("alice")
    assert state.phase is Phase.REGISTERING
    feed(state, ":srv 464 alice :Password required")
    assert state.phase is Phase.ASKING_PASSWORD and state.needs_password
    state.disconnected("closed")
    assert state.phase is Phase.ASKING_PASSWORD  # the prompt outlasts the link
    state.choose_password("pw")
    assert state.phase is Phase.CONNECTING
    state.connected()
    feed(state, ":srv 001 alice :hi")
    assert state.phase is Phase.ONLINE and state.registered
    state.disconnected("reset")
    assert state.phase is Phase.WAITING and not state.registered
    with pytest.raises(BadTransition):
        state.move(Step.WELCOMED)
    assert all(isinstance(phase, Phase) for phase in TRANSITIONS.values())


def test_a_welcome_or_refusal_out_of_turn_changes_no_phase():
    state = ChatState("h", "#chat")
    state.connected()  # asking for a name
    feed(state, ":srv 001 x :Welcome", ":srv 433 * x :in use", ":srv 464 * :no")
    assert state.phase is Phase.ASKING_PASSWORD  # only the password refusal fits here
    registered_state = registered()
    feed(registered_state, ":srv 433 alice bob :Nickname is already in use")
    assert registered_state.phase is Phase.ONLINE


def test_a_name_lost_on_reconnection_is_replaced_by_a_variant_in_one_line():
    state = registered()
    state.disconnected("reset")
    state.connected()
    entries, sent = feed(state, ":srv 433 * alice :Nickname is already in use")
    assert sent == ["NICK :alice_"] and state.nick == "alice_" and not state.needs_nick
    assert [entry.text for entry in entries] == ["The name alice is taken (Nickname is already in use); trying alice_."]
    feed(state, ":srv 001 alice_ :hi")
    assert state.registered and state.nick == "alice_"


def test_reconnection_joins_again_the_rooms_we_were_in_with_their_keys():
    state = registered()
    commands.run(state, "/join #locked sesame")
    feed(state, ":alice!u@h JOIN #locked", ":alice!u@h JOIN #gone", ":alice!u@h PART #gone")
    state.disconnected("reset")
    state.connected()
    feed(state, ":srv 001 alice :hi")
    _, sent = feed(state, f":srv PONG srv :{AUTOJOIN_TOKEN}")
    assert sent == ["JOIN :#chat", "JOIN #locked :sesame"]  # not #gone: we had left it


# -- windows, rules and moderation -------------------------------------------------------------


def test_each_room_and_private_conversation_has_its_window():
    state = registered()
    texts = {}
    for line in (":alice!u@h JOIN #two", ":bob!u@h PRIVMSG #two :in two", ":bob!u@h PRIVMSG #chat :in chat",
                 ":carol!u@h PRIVMSG alice :private"):
        for window, entry in handle(state, parse_message(line)).shown:
            texts.setdefault(window.name, []).append(entry.text)
    assert [window.name for window in state.windows.windows] == ["host:1", "#chat", "#two", "carol"]
    assert texts == {"#two": ["You joined #two.", "in two"], "#chat": ["in chat"], "carol": ["private"]}
    assert state.last_private == "carol"


def test_welcome_motd_and_lusers_go_to_the_server_window_as_sentences():
    state = ChatState("host:1", "#chat", "alice")
    state.connected()
    reaction = handle(state, parse_message(":srv 001 alice :Welcome to the net"))
    assert reaction.shown[0][0] is state.windows.server
    for line in (":srv 004 alice chat.local 0.1.0 iw nt", ":srv 251 alice :There are 2 users",
                 ":srv 375 alice :- MOTD -", ":srv 372 alice :- hello", ":srv 376 alice :End of MOTD"):
        shown = handle(state, parse_message(line)).shown
        assert shown[0][0] is state.windows.server
    assert handle(state, parse_message(":srv 004 alice chat.local 0.1.0 iw nt")).entries[0].text == (
        "Server chat.local runs 0.1.0.")


def test_005_rules_fold_names_and_prefix_marks_show_in_names():
    state = ChatState("h", "#chat", "alice")
    state.connected()
    feed(state, ":srv 001 alice :hi", ":srv 005 alice PREFIX=(qov)~@+ CASEMAPPING=rfc1459 :are supported",
         ":alice!u@h JOIN #chat", ":srv 353 alice = #chat :alice ~boss @[op] +voiced", ":srv 366 alice #chat :End")
    assert state.window_of("#CHAT") is state.window_of("#chat")
    commands.run(state, "/names")
    entries, _ = feed(state, ":srv 353 alice = #chat :alice ~boss @[op] +voiced", ":srv 366 alice #chat :End")
    assert entries[0].text == "4 in #chat: @[op], alice, ~boss, +voiced"
    entries, _ = feed(state, ":boss!u@h MODE #chat +v-o {OP} [op]")  # rfc1459: {op} is [op]
    assert entries[0].text == "boss set mode +v-o {OP} [op] on #chat"
    assert state.window_of("#chat").members[state.fold("[op]")] == ("+", "[op]")


def test_being_kicked_is_one_line_and_the_room_empties():
    state = registered()
    window = state.window_of("#chat")
    entries, _ = feed(state, ":bob!u@h KICK #chat carol :spam")
    assert entries[0].text == "carol was kicked from #chat by bob (spam)" and len(window.members) == 2
    reaction = handle(state, parse_message(":bob!u@h KICK #chat alice :bye"))
    [(where, kicked)] = reaction.shown
    assert where is window and kicked.kind is Kind.ERROR and kicked.highlight
    assert kicked.text == "You were kicked from #chat by bob (bye). /join #chat to go back."
    assert not window.joined and window.members == {} and state.online_count is None
    assert commands.run(state, "still here?").send == []  # not sent to a room we are not in


def test_refusals_and_replies_are_sentences_never_raw_numerics():
    state = registered()
    lines = {
        ":srv 482 alice #chat :You're not channel operator": "You are not a room operator in #chat.",
        ":srv 474 alice #ban :Cannot join channel (+b)": "Cannot join #ban: you are banned from it.",
        ":srv 473 alice #inv :Cannot join channel (+i)": "Cannot join #inv: it is invite-only.",
        ":srv 475 alice #key :Cannot join channel (+k)": "Cannot join #key: the room key is missing or wrong (/join #key KEY).",
        ":srv 471 alice #full :Cannot join channel (+l)": "Cannot join #full: it is full.",
        ":srv 404 alice #chat :Cannot send to channel": "Cannot send to #chat: Cannot send to channel",
        ":srv 441 alice bob #chat :They aren't on that channel": "bob is not in #chat.",
        ":srv 401 alice zed :No such nick/channel": "There is nobody called zed here.",
        ":srv 381 alice :You are now an IRC operator": "You are now an IRC operator.",
        ":srv 464 alice :Password incorrect": "The password was refused (Password incorrect).",
        ":srv 491 alice :No O-lines for your host": "The server has no operator entry for you: /oper refused.",
        ":srv 301 alice bob :gone fishing": "bob is away: gone fishing",
        ":srv 305 alice :You are no longer marked as being away": "You are no longer marked as away.",
        ":srv 306 alice :You have been marked as being away": "You are now marked as away.",
        ":srv 311 alice bob ~b host.example * :Bob Real": "bob is ~b@host.example (Bob Real)",
        ":srv 312 alice bob irc.example :The server": "bob is on server irc.example (The server)",
        ":srv 313 alice bob :is an IRC operator": "bob is an IRC operator.",
        ":srv 317 alice bob 42 1700000000 :seconds idle": "bob has been idle for 42 seconds.",
        ":srv 319 alice bob :@#chat #other": "bob is in @#chat #other",
        ":srv 367 alice #chat bad!*@* op 1700000000": "Banned in #chat: bad!*@*",
        ":srv 368 alice #chat :End of channel ban list": "End of the ban list of #chat.",
        ":srv 322 alice #chat 5 :the topic": "#chat: 5 people. the topic",
        ":srv 341 alice bob #chat": "You invited bob to #chat.",
    }
    for line, sentence in lines.items():
        entries, _ = feed(state, line)
        assert [entry.text for entry in entries] == [sentence], line
    for quiet in (":srv 318 alice bob :End of WHOIS", ":srv 315 alice #chat :End of WHO", ":srv 321 alice Channel :Users"):
        assert feed(state, quiet) == ([], [])


def test_ctcp_version_and_ping_are_answered_by_notice_at_a_bounded_rate():
    state = registered()
    _, sent = feed(state, ":bob!u@h PRIVMSG alice :\x01VERSION\x01")
    assert len(sent) == 1 and sent[0].startswith("NOTICE bob :\x01VERSION curses_client")
    _, sent = feed(state, ":bob!u@h PRIVMSG alice :\x01PING 12345\x01")
    assert sent == []  # too soon after the last answer: a flood of requests cannot make us flood
    state.last_ctcp_reply = float("-inf")
    _, sent = feed(state, ":bob!u@h PRIVMSG alice :\x01PING 12345\x01")
    assert sent == ["NOTICE bob :\x01PING 12345\x01"]
    entries, sent = feed(state, ":bob!u@h PRIVMSG #chat :\x01ACTION waves at alice\x01")
    assert entries[0].kind is Kind.ACTION and entries[0].highlight and sent == []


def test_a_mention_is_highlighted_and_a_lookalike_is_not():
    state = registered()
    entries, _ = feed(state, ":bob!u@h PRIVMSG #chat :hey Alice, look", ":bob!u@h PRIVMSG #chat :alicesmith is here",
                      ":bob!u@h PRIVMSG #chat :@alice: ping")
    assert [entry.highlight for entry in entries] == [True, False, True]


def test_lusers_read_as_words_and_our_own_echoed_private_line_goes_to_its_window():
    state = registered()
    entries, _ = feed(state, ":srv 252 alice 2 :operator(s) online", ":srv 396 alice x.example :is now your host")
    assert [entry.text for entry in entries] == ["2 operator(s) online", "x.example is now your host"]
    reaction = handle(state, parse_message(":alice!u@h PRIVMSG bob :sent from my phone"))
    [(window, entry)] = reaction.shown
    assert window.name == "bob" and entry.kind is Kind.PRIVATE_OUT and state.last_private is None


def test_a_case_mapping_from_005_refolds_the_names_already_known():
    state = registered()  # rfc1459 until told: [x] and {x} are one name
    feed(state, ":alice!u@h JOIN #Room[1]", ":srv 353 alice = #Room[1] :alice Bob[x]", ":srv 366 alice #Room[1] :End")
    assert state.window_of("#room{1}") is not None
    feed(state, ":srv 005 alice CASEMAPPING=ascii :are supported")
    assert state.window_of("#room{1}") is None and state.window_of("#ROOM[1]") is not None
    assert state.fold("Bob[x]") in state.window_of("#room[1]").members
