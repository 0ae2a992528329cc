"""carpet_common.convert.timestamp counts from the epoch itself; it must give what protobuf's
own Timestamp.FromDatetime gives, for every kind of value the services hand it."""
import datetime

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from carpet_common.convert import timestamp


def _protobufs(value: datetime.datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


@pytest.mark.parametrize("value", [
    datetime.datetime(2026, 11, 26, 9, 0, 0, 123456),
    datetime.datetime(1970, 1, 1),
    datetime.datetime(1969, 12, 31, 23, 59, 59, 999999),  # before the epoch: nanos stay >= 0
    datetime.datetime(1, 1, 1),
    datetime.datetime(9999, 12, 31, 23, 59, 59, 999999),
    datetime.datetime(2026, 3, 29, 1, 30, tzinfo=datetime.timezone(datetime.timedelta(hours=3))),
])
def test_timestamp_is_protobufs_own_conversion(value):
    assert timestamp(value) == _protobufs(value)
    assert timestamp(value).ToDatetime() == _protobufs(value).ToDatetime()


def test_no_value_is_no_timestamp():
    assert timestamp(None) is None
