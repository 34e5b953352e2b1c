"""Fixtures for fleet tests: make_fleet builds SSH hosts and always tears them down."""

import pytest

from tests.fleet.harness import Fleet


@pytest.fixture
def make_fleet():
    made = []

    def factory(specs):
        fleet = Fleet.create(specs)
        made.append(fleet)
        return fleet

    yield factory
    for fleet in made:
        fleet.down()


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/fleet/" in str(item.fspath):
            item.add_marker(pytest.mark.root)
            item.add_marker(pytest.mark.fleet)
