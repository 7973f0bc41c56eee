"""What the tests share across directories: synthetic WebRTC peers, WHIP/WHEP over HTTP, Chromium,
the shop of the commerce tests, waiting on state that sends no event."""
