"""Property-based tests of header-address extraction, which both unified
strategies rely on."""

from __future__ import annotations

from email.headerregistry import Address

from hypothesis import given, settings
from hypothesis import strategies as st

from rpopcore.addresses import addresses_in

atom = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=10)
address = st.builds(lambda l, d, t: f"{l}@{d}.{t}", atom, atom, st.sampled_from(["test", "example", "org"]))
display = st.one_of(st.just(""), st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FF, blacklist_characters='"\\'), max_size=12))


def render(name: str, addr: str, style: int) -> str:
    if style == 0:
        return addr
    if style == 1:
        return f"<{addr}>"
    local, _, domain = addr.partition("@")
    return str(Address(display_name=name, username=local, domain=domain))  # quotes or encodes as needed


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(display, address, st.integers(0, 2)), min_size=1, max_size=8), st.integers(1, 3))
def test_every_address_is_found_once_whatever_the_form_and_split(entries, fields):
    rendered = [render(n, a, s) for n, a, s in entries]
    values = [", ".join(rendered[i::fields]) for i in range(fields)]
    values = [v for v in values if v]
    expected = []
    for _, a, _ in entries:
        if a.lower() not in [e.lower() for e in expected]:
            expected.append(a)
    assert sorted(x.lower() for x in addresses_in(values)) == sorted(x.lower() for x in expected)


@settings(max_examples=100, deadline=None)
@given(st.lists(address, min_size=1, max_size=5))
def test_groups_and_case_variants(addrs):
    value = "team: " + ", ".join(a.upper() for a in addrs) + ";, undisclosed-recipients:;"
    found = addresses_in([value, ", ".join(addrs)])
    assert [f.lower() for f in found] == list(dict.fromkeys(a.lower() for a in addrs))


def test_encoded_display_names_and_garbage():
    values = ["=?utf-8?q?J=C3=B6rg_M=C3=BCller?= <jorg@example.test>", "not an address", "(comment) bob@example.test"]
    assert addresses_in(values) == ["jorg@example.test", "bob@example.test"]
