"""A loopback RTSP server for tests/test_rtsp.py: Debian's gst-rtsp-server through python3-gi.

Runs with the SYSTEM python3 (/usr/bin/python3: python3-gi is built for it, not for a pyenv
or venv python):

    /usr/bin/python3 tests/rtsp_server.py PORT MAX_SECONDS

serves rtsp://127.0.0.1:PORT/cam (a moving test pattern, 160x120 at 15 FPS, MJPEG over RTP:
needs only gstreamer1.0-plugins-base/-good), prints "ready" once listening, and exits by
itself after MAX_SECONDS so a test that dies cannot leave it running.
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

PIPELINE = ("( videotestsrc is-live=true pattern=ball ! video/x-raw,format=I420,width=160,height=120,framerate=15/1 "
            "! jpegenc ! rtpjpegpay name=pay0 pt=26 )")


def main() -> int:
    port, max_seconds = sys.argv[1], int(sys.argv[2])
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")  # loopback only
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(PIPELINE)
    factory.set_shared(True)
    server.get_mount_points().add_factory("/cam", factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{port}", file=sys.stderr, flush=True)
        return 1
    loop = GLib.MainLoop()
    GLib.timeout_add_seconds(max_seconds, loop.quit)
    print("ready", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
