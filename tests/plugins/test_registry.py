"""The integration registry: bundled packages found by folder, installed ones by entry point, and every
bad package refused at start with a message naming it (and the package it clashes with)."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from threadline.channels.base import ChannelAdapter
from threadline.plugins import Integration, PluginError, PluginType, registry
from threadline.plugins.registry import CHANNELS_GROUP, GROUP, discover

FAKES = "tests.plugins.fakes"
BUNDLED_KINDS = {"api", "email", "webchat", "twilio", "twilio_whatsapp", "whatsapp", "messenger", "instagram",
                 "telegram", "twilio_voice", "pbx", "asterisk"}


def installed(*eps: tuple[str, str, str]):  # (group, name, "module:attr")
    def source(group: str) -> list[EntryPoint]:
        return [EntryPoint(name, value, g) for g, name, value in eps if g == group]
    return source


def refused(*eps: tuple[str, str, str]) -> str:
    with pytest.raises(PluginError) as info:
        discover(source=installed(*eps))
    return str(info.value)


def test_every_bundled_channel_is_found_by_folder_without_any_entry_point() -> None:
    found = discover(source=installed())
    assert set(found.adapters) == BUNDLED_KINDS
    assert {i.name for i in found.integrations} == {"api", "email", "webchat", "twilio", "whatsapp", "messenger",
                                                      "instagram", "telegram", "twilio_voice", "pbx", "asterisk"}  # meta: a library
    assert {i.name for i in found.integrations if i.type is PluginType.TELEPHONY} == {"twilio_voice", "pbx", "asterisk"}
    assert all(i.type in (PluginType.CHANNEL, PluginType.TELEPHONY) for i in found.integrations)


def test_an_installed_integration_adds_its_kinds() -> None:
    found = discover(source=installed((GROUP, "pigeon", f"{FAKES}:pigeon")))
    assert found.adapters["pigeon"].title == "Carrier pigeon"
    assert set(found.adapters) == BUNDLED_KINDS | {"pigeon"}


def test_an_invalid_manifest_is_refused_naming_the_package_and_each_field() -> None:
    message = refused((GROUP, "broken", f"{FAKES}:bad_manifest"))
    assert "integration 'Bad Name'" in message and "'broken'" in message and f"{FAKES}:bad_manifest" in message
    assert "name: 'Bad Name' is not a lowercase id" in message
    assert "title: give a title" in message


def test_adapters_must_fit_the_plugin_type() -> None:
    message = refused((GROUP, "crm", f"{FAKES}:crm_with_adapter"))
    assert "'crm'" in message and "a crm integration brings no channel adapters" in message
    with pytest.raises(ValueError, match="at least one ChannelAdapter"):
        Integration(name="empty", type=PluginType.CHANNEL, title="Nothing")
    with pytest.raises(ValueError, match=r"adapters\.0"):
        Integration(name="wrong", type=PluginType.CHANNEL, title="Wrong", adapters=(dict,))  # type: ignore[arg-type]


def test_a_migrations_folder_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="is not a folder"):
        Integration(name="x", type=PluginType.CRM, title="X", migrations=tmp_path / "missing")
    assert Integration(name="x", type=PluginType.CRM, title="X", migrations=tmp_path).migrations == tmp_path


def test_two_packages_claiming_one_kind_are_refused_naming_both() -> None:
    message = refused((GROUP, "pigeon", f"{FAKES}:pigeon"), (GROUP, "rival", f"{FAKES}:rival"))
    assert "the channel kind 'pigeon' is claimed by integration 'pigeon'" in message
    assert f"{FAKES}:pigeon" in message and "and by integration 'rival_pigeon'" in message
    assert f"{FAKES}:rival" in message


def test_a_package_claiming_a_bundled_kind_is_refused_naming_the_bundled_one() -> None:
    message = refused((GROUP, "mail2", f"{FAKES}:lookalike"))
    assert "the channel kind 'email' is claimed by integration 'email' (threadline.channels.email (bundled))" in message
    assert f"{FAKES}:lookalike" in message


def test_two_packages_with_one_name_are_refused_naming_both() -> None:
    message = refused((GROUP, "pigeon", f"{FAKES}:pigeon"), (GROUP, "crm", f"{FAKES}:same_name"))
    assert "the integration name 'pigeon' is claimed by" in message
    assert f"{FAKES}:pigeon" in message and f"{FAKES}:same_name" in message


def test_what_cannot_be_loaded_or_is_no_manifest_is_refused_and_every_problem_is_listed() -> None:
    message = refused((GROUP, "gone", "no_such_package.plugin:integration"),
                      (GROUP, "dict", f"{FAKES}:not_a_manifest"),
                      (CHANNELS_GROUP, "old", f"{FAKES}:pigeon"))
    assert "'gone' = 'no_such_package.plugin:integration'" in message and "No module named" in message
    assert f"{FAKES}:not_a_manifest" in message and "is not an Integration manifest (it is dict)" in message
    assert "'old'" in message and "is not a ChannelAdapter subclass" in message


def test_the_old_channels_group_still_registers_adapters() -> None:
    found = discover(source=installed((CHANNELS_GROUP, "fax", f"{FAKES}:LegacyFaxChannel"),
                                      # an older install's entry for an adapter a bundled package brings
                                      (CHANNELS_GROUP, "email", "threadline.channels.email:EmailChannel")))
    fax = next(i for i in found.integrations if i.name == "fax")
    assert fax.type is PluginType.CHANNEL and fax.title == "Fax"
    assert issubclass(found.adapters["fax"], ChannelAdapter)
    assert found.adapters["email"].__module__ == "threadline.channels.email.adapter"


def test_the_same_manifest_twice_counts_once() -> None:
    found = discover(source=installed((GROUP, "email", "threadline.channels.email:integration")))
    assert [i.name for i in found.integrations].count("email") == 1


def test_the_process_registry_is_cached_and_refuses_until_fixed(monkeypatch: pytest.MonkeyPatch) -> None:
    registry.reset()
    try:
        monkeypatch.setattr(registry, "entry_points", installed((GROUP, "broken", f"{FAKES}:bad_manifest")))
        for _ in range(2):
            with pytest.raises(PluginError, match="Bad Name"):
                registry.load()
        monkeypatch.setattr(registry, "entry_points", installed((GROUP, "pigeon", f"{FAKES}:pigeon")))
        assert registry.get_adapter_class("pigeon") is registry.load().adapters["pigeon"]
        assert registry.load() is registry.load()
    finally:
        registry.reset()
