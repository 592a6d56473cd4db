"""A Radio over a plain UART or pty: no modes, no AUX, no sub-packet splitting.

For the HIL rig and tests, where two nodes (or a node and the gateway) are joined by a
serial line instead of LoRa modules. Packets are cut at gaps like a UART LoRa module
outputs them; frames that must survive back-to-back packets carry their own serial
framing (protocol/). airtime_ms() uses the LoRa formula for the configured (sf, bw) so
the link's airtime budget behaves as it would on air."""
from firmware.radio.radio import GapPacketizer, Radio, lora_airtime_ms


class LoopbackRadio(Radio):
    def __init__(self, uart, hal, max_payload=240, gap_ms=5, lora=(9, 125000)):
        self._uart = uart
        self._rx = GapPacketizer(uart, hal, gap_ms)
        self.max_payload = max_payload
        self._lora = lora
        self.asleep = False
        self.sent = 0
        self.refused = 0

    def send(self, data):
        if self.asleep or not 0 < len(data) <= self.max_payload:
            self.refused += 1
            return False
        self._uart.write(data)
        self.sent += 1
        return True

    def poll(self):
        if self.asleep:
            return None
        return self._rx.poll()

    def airtime_ms(self, n):
        return int(lora_airtime_ms(n, self._lora[0], self._lora[1]) + 0.999)

    def sleep(self):
        self.asleep = True

    def wake(self):
        self.asleep = False
