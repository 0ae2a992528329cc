"""The sign-in rules that need no server: the email normal form, the password rules."""
import pytest

from carpet_common.errors import InvalidArgument
from credit_service.emails import display_form, normalize_email
from credit_service.passwords import check_new_password, hash_password, verify_password


@pytest.mark.parametrize("typed", [
    "İSMAİL@firma.com.tr", "ismail@firma.com.tr", "ISMAIL@FIRMA.COM.TR", "ismail@FİRMA.com.tr",
    " ismail@firma.com.tr ", "İSMAİL@firma.com.tr".lower(),  # i + U+0307, as stored before
])
def test_turkish_spellings_of_one_address_are_one_sign_in_name(typed):
    assert normalize_email(typed) == "ismail@firma.com.tr"


def test_the_domain_takes_its_idna_form_and_the_local_part_stays_unicode():
    assert normalize_email("Şule@Örnek.com.tr") == "şule@xn--rnek-4qa.com.tr"
    assert normalize_email("şule@xn--rnek-4qa.com.tr") == "şule@xn--rnek-4qa.com.tr"
    # NFC: a decomposed ş (s + U+0327) is the same name as the composed one.
    assert normalize_email("s\u0327ule@örnek.com.tr") == "şule@xn--rnek-4qa.com.tr"
    assert display_form(" Şule@Örnek.com.tr ") == "Şule@Örnek.com.tr"


@pytest.mark.parametrize("bad", ["", "no-at-sign", "a@b", "a b@example.com", "a@-.com",
                                 "x@localhost", "a@exa mple.com", "a\x00@example.com",
                                 "a" * 65 + "@example.com", "a@" + "b" * 320 + ".com"])
def test_what_is_not_an_address_is_refused(bad):
    with pytest.raises(InvalidArgument):
        normalize_email(bad)


@pytest.mark.parametrize("password, rule", [
    ("short-one", "at least 12"), ("x" * 257, "at most 256"),
    ("Password1234", "too common"), ("QWERTYUIOP123", "too common"),
    ("galatasaray1905", "too common"), ("ayse.yilmaz@example.com", "email"),
])
def test_weak_passwords_are_refused_saying_why_without_echoing(password, rule):
    with pytest.raises(InvalidArgument) as refused:
        check_new_password(password, "ayse.yilmaz@example.com")
    assert rule in refused.value.message and password not in refused.value.message
    assert refused.value.reason == "WEAK_PASSWORD"


def test_hashes_are_argon2id_salted_and_verified():
    first, second = hash_password("şifre-desen-2026"), hash_password("şifre-desen-2026")
    assert first.startswith("$argon2id$") and first != second
    assert verify_password(first, "şifre-desen-2026")
    # The same characters composed differently (s + U+0327 typed on another system) match.
    assert verify_password(first, "s\u0327ifre-desen-2026")
    assert not verify_password(first, "şifre-desen-2027")
    assert not verify_password("", "anything-at-all")
    assert not verify_password("not-a-hash", "anything-at-all")
