"""Out-of-band frames (allcores/_oob.py, read by the C core's oob_frame.c): what dumps writes,
loads reads back without copying; a frame that does not hold together raises CorruptError."""
import pickle
import struct

import pytest

from allcores import _core, _oob

np = pytest.importorskip("numpy")


def _joined(parts):
    return b"".join(bytes(memoryview(p)) for p in parts)


def test_round_trip_of_big_buffers_at_aligned_offsets():
    big = bytes(range(256)) * 400
    arr = np.arange(20000, dtype=np.int64)
    frame = bytearray(_joined(_oob.dumps((big, [arr, bytearray(b"z" * 70000)], {"k": 1}))))
    stream, bufs = _core.oob_split(frame)
    assert len(bufs) == 3
    base = memoryview(frame)
    for b in bufs:
        assert b.obj is frame or b.obj is base.obj  # views of the payload, not copies
    got = _oob.loads(frame)
    assert got[0] == big and got[2] == {"k": 1}
    assert np.array_equal(got[1][0], arr) and got[1][1] == bytearray(b"z" * 70000)
    frame[-1] = ord("y")  # the received bytearray was copied, numpy arrays are views
    assert got[1][1][-1] == ord("z")


def test_frames_that_do_not_hold_together_raise_corrupt_error():
    good = _joined(_oob.dumps((b"x" * 70000,)))
    n, stream_len = struct.unpack_from("<IQ", good)
    cases = {
        "empty": b"",
        "cut count": good[:3],
        "cut header": good[:10],
        "cut buffer": good[:-1],
        "stream past the end": good[:4] + struct.pack("<Q", len(good)) + good[12:],
        "buffer length wraps": good[:12] + struct.pack("<Q", 2**64 - 8) + good[20:],
        "too many buffers": struct.pack("<I", _core.OOB_MAX_BUFFERS + 1) + good[4:],
    }
    for what, frame in cases.items():
        with pytest.raises(_core.CorruptError, match="does not hold together"):
            _oob.loads(frame)
    assert pickle.loads(_core.oob_split(good)[0], buffers=_core.oob_split(good)[1]) == \
        (b"x" * 70000,)


def test_a_non_contiguous_payload_is_refused():
    with pytest.raises(TypeError, match="C-contiguous"):
        _core.oob_split(memoryview(bytes(100))[::2])
