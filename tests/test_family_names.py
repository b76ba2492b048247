"""A family answers to its id and SimpleTuner's spellings, as the registry reads them: code that holds
a Family checks a file's family name with it instead of looking the name up."""
from __future__ import annotations

import pytest

from sliderstudio.families.registry import FAMILIES, get_family


@pytest.mark.parametrize("family_id", sorted(FAMILIES))
def test_a_family_answers_to_every_name_the_registry_gives_it(family_id):
    family = FAMILIES[family_id]
    for name in (family.id, *family.aliases, family.id.upper(), family.id.replace("_", "-")):
        assert family.answers_to(name) and get_family(name) is family
    others = [f for f in FAMILIES.values() if f is not family]
    assert not any(other.answers_to(family.id) for other in others)


def test_spellings_people_write():
    assert get_family("flux").answers_to(" FLUX ") and get_family("sd1x").answers_to("SD1X")
    assert not get_family("sdxl").answers_to("sd1x") and not get_family("flux").answers_to("")
