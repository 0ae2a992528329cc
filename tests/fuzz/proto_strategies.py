"""Hypothesis strategies for any protobuf request, built from its descriptor: every field may be
missing, strings run from empty through unicode and NUL to a megabyte, numbers to their type's
limits (and past a field's meaning: negative ids, huge amounts), enums to values no .proto
names, nested messages (timestamps) to out-of-range seconds. Small ids are favoured so that
calls also reach rows that exist."""
from __future__ import annotations

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

MEGABYTE = 1024 * 1024
MISSING = object()

_SPECIAL_TEXT = ["", " ", "\x00", "a\x00b", "é" * 300, "ROLE_ADMIN", "ROLE_STAFF", "preview",
                 "hd", "ada@example.com", "ADA@EXAMPLE.COM", "render-job:1", "queued", "adjust",
                 "alice", "x" * 10_000, "\ud7ff\U0010ffff", "' OR 1=1 --"]
_HUGE_TEXT = st.sampled_from(["x" * MEGABYTE, "ğ" * (MEGABYTE // 2), ("a\x00" * MEGABYTE)])
_TEXT = st.one_of(st.sampled_from(_SPECIAL_TEXT), st.text(max_size=40), _HUGE_TEXT)


def _integers(bits: int, signed: bool):
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    edges = [value for value in (0, 1, 2, 3, -1, 2**31 - 1, 2**53, low, high)
             if low <= value <= high]
    return st.one_of(st.integers(1, 4), st.sampled_from(edges), st.integers(low, high))


_INTEGERS = {
    FieldDescriptor.TYPE_INT64: _integers(64, True),
    FieldDescriptor.TYPE_SINT64: _integers(64, True),
    FieldDescriptor.TYPE_SFIXED64: _integers(64, True),
    FieldDescriptor.TYPE_INT32: _integers(32, True),
    FieldDescriptor.TYPE_SINT32: _integers(32, True),
    FieldDescriptor.TYPE_SFIXED32: _integers(32, True),
    FieldDescriptor.TYPE_UINT64: _integers(64, False),
    FieldDescriptor.TYPE_FIXED64: _integers(64, False),
    FieldDescriptor.TYPE_UINT32: _integers(32, False),
    FieldDescriptor.TYPE_FIXED32: _integers(32, False),
}


def _bytes(valid_images: list[bytes]):
    return st.one_of(st.binary(max_size=64), st.sampled_from(valid_images),
                     st.just(b"\x89PNG\r\n\x1a\n" + b"\x00" * MEGABYTE))


def _single_value(field: FieldDescriptor, valid_images: list[bytes], depth: int):
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return message_strategy(field.message_type, valid_images, depth + 1)
    if field.type == FieldDescriptor.TYPE_ENUM:
        named = [value.number for value in field.enum_type.values]
        return st.one_of(st.sampled_from(named), st.integers(-3, 2**31 - 1))
    if field.type == FieldDescriptor.TYPE_STRING:
        return _TEXT
    if field.type == FieldDescriptor.TYPE_BYTES:
        return _bytes(valid_images)
    if field.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(allow_nan=True, width=64 if field.type == FieldDescriptor.TYPE_DOUBLE
                         else 32)
    return _INTEGERS[field.type]


def _field_value(field: FieldDescriptor, valid_images: list[bytes], depth: int):
    single = _single_value(field, valid_images, depth)
    if field.is_repeated:
        return st.lists(single, max_size=3 if depth else 5)
    return single


def message_strategy(descriptor: Descriptor, valid_images: list[bytes], depth: int = 0):
    """A strategy of `descriptor`'s message class with any subset of its fields set."""
    message_class = GetMessageClass(descriptor)
    if depth > 2:
        return st.just(message_class())
    fields = {field.name: st.one_of(st.just(MISSING), _field_value(field, valid_images, depth))
              for field in descriptor.fields}

    def build(values: dict):
        message = message_class()
        for name, value in values.items():
            if value is MISSING:
                continue
            field = descriptor.fields_by_name[name]
            if field.is_repeated:
                getattr(message, name).extend(value)
            elif field.type == FieldDescriptor.TYPE_MESSAGE:
                getattr(message, name).CopyFrom(value)
            else:
                setattr(message, name, value)
        return message

    return st.fixed_dictionaries(fields).map(build)
