"""Signed model packages: the device's check (firmware/src/update/package.c, host build)
accepts what imgtool signed with the trusted key and refuses every damaged or foreign
package with its own reason."""

from __future__ import annotations

import pytest

pytest.importorskip("imgtool")

from aiot.lifecycle import device as D  # noqa: E402
from aiot.lifecycle import package as P  # noqa: E402

SCHEMA = P.schema_id(["pressure", "flow", "temperature"], 8)


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    good = P.generate_key(d / "release.pem")
    other = P.generate_key(d / "other.pem")
    return d, good, other


def _body(**kw):
    args = dict(tflite=b"TFL3" + bytes(range(256)) * 3, golden=[([1, -2, 3], [4, 5, -6])], schema=SCHEMA, model_version=7)
    args.update(kw)
    return P.build_container({"name": "pump-ae", "data_hash": "abc"}, **args)


@pytest.fixture(scope="module")
def signed(keys):
    d, good, _ = keys
    return P.sign(_body(), good, version="1.2.3", out=d / "ok.bin")


def _check(image, keys, **kw):
    _, good, _ = keys
    kw.setdefault("schema_id", SCHEMA)
    return D.verify(image, P.public_key(good), **kw)


def test_signed_package_is_accepted_and_agrees_with_imgtool(keys, signed):
    d, good, _ = keys
    v = _check(signed, keys)
    assert v.name == "OK", v.text
    assert v.model_version == 7
    ok, text = P.imgtool_verify(d / "ok.bin", good)
    assert ok, text
    assert v.digest.hex() in text  # the digest the device computed is imgtool's


def test_container_round_trip(signed):
    body = signed[P.IMAGE_HEADER_SIZE :]
    c = P.read_container(body)
    assert c["meta"]["name"] == "pump-ae" and c["abi"] == P.MODEL_ABI and c["schema_id"] == SCHEMA
    assert c[P.TFLITE].startswith(b"TFL3")


def test_other_key_is_refused(keys):
    d, _, other = keys
    image = P.sign(_body(), other, version="1.2.3", out=d / "other.bin")
    assert _check(image, keys).name == "WRONG_KEY"


@pytest.mark.parametrize("keep", [0, 16, 31, 40, P.IMAGE_HEADER_SIZE + 10, -1, -65])
def test_truncated_package_is_refused(keys, signed, keep):
    image = signed[:keep] if keep >= 0 else signed[:keep]
    v = _check(image, keys)
    assert v.name in ("TRUNCATED", "BAD_TLV"), v.name


def test_every_bit_flip_region_is_refused(keys, signed):
    # header fields, the package body, the hash TLV and the signature itself
    tlv = P.IMAGE_HEADER_SIZE + int.from_bytes(signed[12:16], "little")
    positions = [1, 9, 20, P.IMAGE_HEADER_SIZE + 3, P.IMAGE_HEADER_SIZE + 100, tlv - 1, tlv + 8, len(signed) - 5]
    for pos in positions:
        flipped = bytearray(signed)
        flipped[pos] ^= 0x10
        v = _check(bytes(flipped), keys)
        assert v.name != "OK", f"flip at byte {pos} was accepted"
    flipped = bytearray(signed)
    flipped[P.IMAGE_HEADER_SIZE + 100] ^= 0x01
    assert _check(bytes(flipped), keys).name == "BAD_HASH"
    flipped = bytearray(signed)
    flipped[len(signed) - 5] ^= 0x01  # inside the Ed25519 signature (the last TLV)
    assert _check(bytes(flipped), keys).name == "BAD_SIGNATURE"


def test_other_firmware_abi_is_refused(keys):
    d, good, _ = keys
    image = P.sign(_body(abi=P.MODEL_ABI + 1), good, version="1.2.4", out=d / "abi.bin")
    assert _check(image, keys).name == "WRONG_ABI"


def test_other_sensor_schema_is_refused(keys):
    d, good, _ = keys
    other_schema = P.schema_id(["pressure", "flow"], 8)
    image = P.sign(_body(schema=other_schema), good, version="1.2.5", out=d / "schema.bin")
    assert _check(image, keys).name == "WRONG_SCHEMA"
    assert _check(image, keys, schema_id=other_schema).name == "OK"


def test_unsigned_image_is_refused(keys):
    d, _, _ = keys
    raw = d / "unsigned.body"
    raw.write_bytes(_body())
    P._run_imgtool(["sign", "--header-size", hex(P.IMAGE_HEADER_SIZE), "--pad-header", "--slot-size",
                    hex(P.DEFAULT_SLOT_SIZE), "--version", "1.0.0", str(raw), str(d / "unsigned.bin")], "sign")
    assert _check((d / "unsigned.bin").read_bytes(), keys).name == "UNSIGNED"


def test_firmware_image_or_noise_is_refused(keys):
    assert _check(b"\x00" * 64, keys).name == "NOT_IMAGE"
    d, good, _ = keys
    not_a_package = P.sign(b"\x7fELF" + bytes(500), good, version="1.0.0", out=d / "elf.bin")
    assert _check(not_a_package, keys).name == "NOT_PACKAGE"


def test_every_reason_has_a_text():
    for code, name in D.REASONS.items():
        text = D.reason_text(code)
        assert text and text != "unknown reason", name


def test_random_damage_never_crashes_and_is_never_accepted(keys, signed):
    """Bad input never crashes the device's parser: 3,000 random mutations, truncations and
    header-field rewrites (sizes that point anywhere), each refused with a reason."""
    import random
    import struct

    rng = random.Random(21)
    hdr_end = P.IMAGE_HEADER_SIZE + int.from_bytes(signed[12:16], "little")
    for i in range(3000):
        img = bytearray(signed)
        kind = i % 4
        if kind == 0:  # flip 1-8 random bytes
            for _ in range(rng.randint(1, 8)):
                img[rng.randrange(len(img))] ^= rng.randint(1, 255)
        elif kind == 1:  # a header size field set to anything
            off, fmt = rng.choice([(8, "<H"), (10, "<H"), (12, "<I")])
            struct.pack_into(fmt, img, off, rng.randrange(2 ** (8 * struct.calcsize(fmt))))
        elif kind == 2:  # TLV info or a TLV length set to anything
            struct.pack_into("<H", img, rng.choice([hdr_end + 2, hdr_end + 6, hdr_end + 42]), rng.randrange(65536))
        else:  # truncated anywhere, or garbage appended after a truncation
            img = img[: rng.randrange(len(img))] + bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
        if bytes(img) == signed:
            continue
        v = _check(bytes(img), keys)
        assert v.name != "OK" or bytes(img[: len(signed)]) == signed, f"mutation {i} ({kind}) accepted"


@pytest.mark.slow  # the sanitized build of the crypto takes ~15 s the first time
def test_parser_is_memory_safe_under_asan(keys, signed, tmp_path):
    """The same damage, with the C built under AddressSanitizer + UBSan (in a child process
    that preloads libasan): no out-of-bounds read, no undefined behaviour."""
    import os
    import shutil
    import subprocess
    import sys

    gcc = shutil.which("gcc")
    libasan = subprocess.run([gcc, "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip() if gcc else ""
    if not libasan or not os.path.isabs(libasan):
        pytest.skip("gcc's libasan is not installed")
    _, good, _ = keys
    (tmp_path / "signed.bin").write_bytes(signed)
    script = f"""
import random, struct
from aiot.lifecycle import device as D, package as P
signed = open({str(tmp_path / 'signed.bin')!r}, 'rb').read()
pub = P.public_key({str(good)!r})
rng = random.Random(7)
assert D.verify(signed, pub).name == 'OK'
for i in range(1500):
    img = bytearray(signed)
    k = i % 3
    if k == 0:
        struct.pack_into(rng.choice(['<H', '<I']), img, rng.choice([8, 10, 12]), rng.randrange(65536))
    elif k == 1:
        img = img[: rng.randrange(len(img))]
    else:
        for _ in range(4):
            img[rng.randrange(len(img))] ^= 0xFF
    D.verify(bytes(img), pub)
print('clean')
"""
    env = {**os.environ, "AIOT_UPDATE_SANITIZE": "1", "LD_PRELOAD": libasan, "ASAN_OPTIONS": "detect_leaks=0"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0 and "clean" in proc.stdout, proc.stderr[-2000:]


def test_imgtool_runs_in_this_process_and_its_refusals_still_say_why(tmp_path, monkeypatch):
    """Key generation, signing and imgtool's verdict call imgtool's own command in this
    process: a process of its own took most of a second each (Python and imgtool's imports),
    for an operation of a few milliseconds. What imgtool says on a failure is still in the
    error, and its verdict on a damaged image is still 'not valid'."""
    import subprocess

    from aiot.errors import ToolkitError

    def no_process(*a, **k):
        raise AssertionError(f"a process was started: {a[0] if a else k}")

    monkeypatch.setattr(subprocess, "run", no_process)
    monkeypatch.setattr(subprocess, "Popen", no_process)
    key = P.generate_key(tmp_path / "k.pem")
    image = P.sign(_body(), key, version="2.0.1", out=tmp_path / "s.bin")
    ok, text = P.imgtool_verify(tmp_path / "s.bin", key)
    assert ok and "2.0.1" in text, text
    damaged = bytearray(image)
    damaged[P.IMAGE_HEADER_SIZE + 20] ^= 1
    (tmp_path / "d.bin").write_bytes(bytes(damaged))
    ok, text = P.imgtool_verify(tmp_path / "d.bin", key)
    assert not ok and "invalid hash" in text, text
    (tmp_path / "not-a-key.pem").write_text("not a key\n")
    with pytest.raises(ToolkitError, match="imgtool sign failed: .+") as e:
        P.sign(_body(), tmp_path / "not-a-key.pem", version="2.0.2", out=tmp_path / "x.bin")
    assert "imgtool sign --help" in e.value.hint
