"""Device.stats() gathers every channel's record of a wide installation over several STATS
answers (protocol 1.3: STATS [first channel u8]), and asks a 1.2 device only once (it would
answer the first channels again). The device is the scripted fake of test_protocol_client;
the real firmware's paging is tested in hil_tests/test_hil_monitor.py."""

from __future__ import annotations

import ctypes
import struct
from dataclasses import replace

import pytest

from aiot import monitor as M
from aiot.device import protocol as P

from test_protocol_client import INFO, fake, reply  # noqa: F401  (fake: the fixture)

CHANNELS = 40
HEAD = 4 + ctypes.sizeof(M.Stats) + 40  # head, the monitor's stats, the link counters
ROOM = (1024 - HEAD) // ctypes.sizeof(M.ChannelInfo)  # records one 1 KiB answer holds


def record(channel: int) -> bytes:
    ci = M.ChannelInfo()
    ci.baseline, ci.noise, ci.rejected = float(channel), 1.0, channel % 3
    return bytes(ci)


def stats_device(minor: int, channels: int = CHANNELS):
    """A configured device of ``channels`` sensors speaking protocol 1.``minor``: a 1.3 one
    answers from the channel asked for, a 1.2 one ignores the payload (always from channel 0)."""
    asked: list[bytes] = []

    def handler(f):
        if f.type == P.Msg.INFO:
            return reply(f, P.pack_info(replace(INFO, proto_minor=minor, flags=P.DeviceInfo.FLAG_MONITOR,
                                                max_payload=1024)))
        if f.type != P.Msg.STATS:
            return None
        asked.append(bytes(f.payload))
        first = f.payload[0] if minor >= 3 and f.payload else 0
        records = [record(c) for c in range(first, channels)][:ROOM]
        head = bytes([1, len(records), ctypes.sizeof(M.Stats), ctypes.sizeof(M.ChannelInfo)])
        return reply(f, head + bytes(ctypes.sizeof(M.Stats)) + struct.pack("<8IQ", *([0] * 8), 0) + b"".join(records))

    return handler, asked


def test_a_1_3_device_gives_every_channel_over_several_answers(fake):
    assert ROOM == 23  # the figure docs/protocol.md gives
    handler, asked = stats_device(3)
    _fd, dev = fake(handler)
    channels = dev.stats()["channels"]
    assert [c["baseline"] for c in channels] == [float(c) for c in range(CHANNELS)]
    assert [c["rejected"] for c in channels] == [c % 3 for c in range(CHANNELS)]
    assert asked == [b"", bytes([23])]  # the second answer had room to spare: it was the last


def test_a_1_2_device_is_asked_once_and_its_first_channels_kept(fake):
    handler, asked = stats_device(2)
    _fd, dev = fake(handler)
    channels = dev.stats()["channels"]
    assert [c["baseline"] for c in channels] == [float(c) for c in range(ROOM)]
    assert asked == [b""]


@pytest.mark.parametrize("n", [ROOM, 2 * ROOM])
def test_a_full_last_answer_is_followed_by_an_empty_one(fake, n):
    """When the channels fill the last answer exactly, one more request finds none left."""
    handler, asked = stats_device(3, n)
    _fd, dev = fake(handler)
    assert len(dev.stats()["channels"]) == n
    assert asked == [b"", *(bytes([k * ROOM]) for k in range(1, n // ROOM + 1))]
