"""The client's command line and its TLS settings (curses_client.app.parse_args, curses_client.tls)."""

import ssl
import sys

import pytest

from curses_client.app import parse_args, program_name
from curses_client.tls import CaFileError, client_context, describe_tls_error


def test_default_port_follows_tls():
    assert parse_args([]).port == 5555
    assert parse_args(["--tls"]).port == 6697
    assert parse_args(["--tls", "--port", "7000"]).port == 7000


@pytest.mark.parametrize("argv", [["--tls-ca", "x.pem"], ["--tls-insecure"], ["--tls", "--tls-ca", "x", "--tls-insecure"]])
def test_tls_options_need_tls_and_do_not_contradict(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2
    assert "--tls" in capsys.readouterr().err


def test_password_from_the_flag_or_the_environment(monkeypatch):
    monkeypatch.delenv("CHAT_PASSWORD", raising=False)
    assert parse_args([]).password is None
    monkeypatch.setenv("CHAT_PASSWORD", "from-env")
    assert parse_args([]).password == "from-env"
    assert parse_args(["--password", "flag"]).password == "flag"
    monkeypatch.setenv("CHAT_PASSWORD", "")
    assert parse_args([]).password is None


def test_a_password_with_a_line_break_is_refused_without_echoing_it(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--password", "se\ncret"])
    assert "cret" not in capsys.readouterr().err


def test_context_verifies_with_hostname_checks_unless_insecure():
    context = client_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    insecure = client_context(insecure=True)
    assert insecure.verify_mode == ssl.CERT_NONE and not insecure.check_hostname


def test_a_ca_file_that_cannot_be_used_is_one_sentence(tmp_path):
    missing, junk = tmp_path / "missing.pem", tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(CaFileError, match=r"^Cannot use .*missing.pem as the certificate authority file: "
                                          r"No such file or directory\.$"):
        client_context(str(missing))
    with pytest.raises(CaFileError, match=r"^Cannot use .*junk.pem as the certificate authority file: .+\.$"):
        client_context(str(junk))


def test_tls_errors_read_as_phrases():
    error = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    error.verify_message = "self-signed certificate"
    assert describe_tls_error(error) == "its TLS certificate could not be verified (self-signed certificate)"
    assert describe_tls_error(ssl.SSLEOFError(8, "the server closed the connection")) == (
        "the TLS handshake failed (the server closed the connection)"
    )


def test_usage_names_the_command_as_it_was_run(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/home/me/.local/bin/chat", "--help"])
    assert program_name() == "chat"
    monkeypatch.setattr(sys, "argv", ["/clone/curses_client/__main__.py", "--help"])
    assert program_name() == "python -m curses_client"
