"""A logged-in superuser for the admin tests."""
import pytest
from django.test import Client

from tests.tenants.factories import UserFactory


@pytest.fixture
def staff(db):
    return UserFactory(username="staff", is_staff=True, is_superuser=True)


@pytest.fixture
def staff_client(staff):
    client = Client()
    client.force_login(staff)
    return client
