// An emulated Raspberry Pi Pico: rp2040js (pinned in package-lock.json) running the pinned
// MicroPython image with the RP2040 B1 boot ROM, driven by hil/pico.py over stdin/stdout.
//
//   node pico.mjs --image RPI_PICO-v1.28.0.uf2 --bootrom rp2040-bootrom-b1.bin [--flash F]
//
// Wire format, both directions: frames of [kind:u8][length:u32 LE][payload].
//   host -> board: 'u' bytes typed into USB CDC, 'a' bytes into UART0 RX, 'c' a JSON command
//   board -> host: 'u' USB CDC output, 'a' UART0 TX bytes, 'e' a JSON event or reply
//
// What this adds to rp2040js, as a board on a bench has it (../NOTES in docs/rp2-emulator.md):
//  - flash that can be written: the QSPI erase/program commands are not emulated, so when
//    the core reaches the boot ROM's flash_range_erase / flash_range_program (found through
//    the ROM's function table, codes 'RE' and 'RP', as the SDK finds them) the operation is
//    done on the flash array (erase = 0xFF, program = AND, as NOR flash) and the call returns;
//  - a PL011-like TX interrupt: raised when a byte is written, not held asserted forever
//    (MicroPython >= 1.23 enables it at init, and a stuck line never lets UART() return);
//  - a chip reset: a watchdog timeout or machine.reset() (the watchdog's trigger) rebuilds
//    the chip with the same flash and the watchdog's scratch and reason registers, so the
//    ROM boots the image again and machine.reset_cause() reads WDT_RESET, as on silicon;
//  - power: a cut stops the core at a random instruction (flash stays as it is, RAM is
//    lost); power-on is a cold boot (reset_cause PWRON_RESET);
//  - pins and ADC from the host: an undriven input follows its pull resistor; outputs the
//    host watches are reported with the emulated time they changed;
//  - UART0 RX paced at the configured baud rate in emulated time (32-byte FIFO, as PL011);
//  - emulated time held to wall time (x --speed): idle sleeps are not skipped past the
//    host, whose gateway and radio run on wall time.
import fs from 'node:fs';
import { RP2040, USBCDC } from 'rp2040js';

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => {
  if (a.startsWith('--')) acc.push([a.slice(2), all[i + 1]]);
  return acc;
}, []));
const CLK_HZ = 125e6;
const CYCLE_NS = 1e9 / CLK_HZ;
const FLASH_BASE = 0x10000000;
const SPEED = Number(args.speed || 1);
const CHUNK = 20000;                      // instructions between looks at the host

// ------------------------------------------------------------------- host link
const out = process.stdout;
function send(kind, payload) {
  const head = Buffer.alloc(5);
  head[0] = kind.charCodeAt(0);
  head.writeUInt32LE(payload.length, 1);
  out.write(Buffer.concat([head, Buffer.from(payload)]));
}
function event(obj) {
  obj.cycles = board.cycles();
  obj.ns = board.clock ? board.clock.nanos : 0;
  send('e', Buffer.from(JSON.stringify(obj)));
}

// ------------------------------------------------------------------- images
function loadUF2(buf, flash) {
  for (let off = 0; off + 512 <= buf.length; off += 512) {
    const b = buf.subarray(off, off + 512);
    const dv = new DataView(b.buffer, b.byteOffset, 512);
    if (dv.getUint32(0, true) !== 0x0a324655 || dv.getUint32(4, true) !== 0x9e5d5157) {
      throw new Error(`block ${off / 512} of the image is not UF2`);
    }
    const addr = dv.getUint32(12, true);
    const size = dv.getUint32(16, true);
    flash.set(b.subarray(32, 32 + size), addr - FLASH_BASE);
  }
}

function romTable(rom8, code) {
  // ROM layout: u16 at 0x14 = function table, entries (u16 code, u16 address), 0-terminated
  const dv = new DataView(rom8.buffer, rom8.byteOffset, rom8.length);
  let p = dv.getUint16(0x14, true);
  for (;;) {
    const c = dv.getUint16(p, true);
    if (!c) break;
    if (c === code) return dv.getUint16(p + 2, true);
    p += 4;
  }
  throw new Error(`boot ROM has no function ${code.toString(16)}`);
}
const rc = (a, b) => a.charCodeAt(0) | (b.charCodeAt(0) << 8);

const bootrom8 = fs.readFileSync(args.bootrom);
const bootrom32 = new Uint32Array(bootrom8.buffer, bootrom8.byteOffset, bootrom8.length / 4);
const ROM_ERASE = romTable(bootrom8, rc('R', 'E')) & ~1;
const ROM_PROGRAM = romTable(bootrom8, rc('R', 'P')) & ~1;

// the chip's flash, kept across resets and power cuts (2 MB on a Pico)
const FLASH_BYTES = 2 * 1024 * 1024;
const flash = new Uint8Array(FLASH_BYTES).fill(0xff);
loadUF2(fs.readFileSync(args.image), flash);
if (args.flash && fs.existsSync(args.flash)) {
  const saved = fs.readFileSync(args.flash);
  flash.set(saved.subarray(0, FLASH_BYTES));
}

// ------------------------------------------------------------------- the board
const board = {
  mcu: null, clock: null, cdc: null,
  on: false, boots: 0,
  cyclesBefore: 0,                       // cycles of earlier boots
  flashOps: { erase: 0, erase_bytes: 0, program: 0, program_bytes: 0 },
  cycles() { return this.cyclesBefore + (this.mcu ? this.mcu.core.cycles : 0); },
};
const drive = new Map();                   // pin -> 0/1 driven by the host
const watched = new Set();
const adcValues = [0, 0, 0, 0, 0];
let uartTx = [];                           // UART0 TX, sent at the end of each chunk
let usbIn = [];                            // host -> USB CDC
let uartIn = [];                           // host -> UART0 RX
let uartAlarm = null;
let pending = null;                        // 'watchdog' | 'cut' | null
let cutAfter = -1;
let wallStart = 0;
let nsStart = 0;

function pullLevel(pin) {
  const p = board.mcu.gpio[pin];
  if (p.pullupEnabled && !p.pulldownEnabled) return true;
  if (p.pulldownEnabled && !p.pullupEnabled) return false;
  return p.rawInputValue;
}
function applyPin(pin) {
  const p = board.mcu.gpio[pin];
  const level = drive.has(pin) ? !!drive.get(pin) : pullLevel(pin);
  if (p.rawInputValue !== level) p.setInputValue(level);
}

function uartByteNs() {
  const u = board.mcu.uart[0];
  const baud = u.baudDivider ? u.baudRate : 115200;
  return 10 * 1e9 / baud;
}
function pumpUart() {
  uartAlarm = null;
  const u = board.mcu.uart[0];
  if (uartIn.length && u.rxFIFO.itemCount < 32) u.feedByte(uartIn.shift());
  if (uartIn.length) scheduleUart();
}
function scheduleUart() {
  if (!uartAlarm && board.on) {
    uartAlarm = board.clock.createAlarm(pumpUart);
    uartAlarm.schedule(uartByteNs());
  }
}

function patchUart(u) {
  // PL011: TXINTR is raised when the TX FIFO drains below its level, i.e. (with bytes leaving
  // at once here) after each write, and cleared by ICR or by writing more; never held on
  const TXINTR = 1 << 5;
  u.checkInterrupts = function () {
    this.rp2040.setInterrupt(this.irq, !!(this.interruptStatus & this.interruptMask));
  };
  const write = u.writeUint32.bind(u);
  u.writeUint32 = function (offset, value) {
    write(offset, value);
    if (offset === 0) {
      this.interruptStatus |= TXINTR;
      this.checkInterrupts();
    }
  };
}

// rp2040js' SIO prints straight to the console when the firmware reads the inter-core
// FIFO (0x50 FIFO_ST, 0x58 FIFO_RD: the SDK's flash and lockout code looks at core 1,
// which is not emulated). Harmless, and a dozen lines per run on the user's terminal:
// they become log events like the emulator's other warnings.
console.warn = (...a) => event({ ev: 'log', tag: 'rp2040js', msg: a.join(' ') });

function powerOn(cause, keep) {
  const mcu = new RP2040();
  const { clock } = mcu;
  mcu.logger = { debug() {}, info() {}, warn() {}, error(tag, msg) { event({ ev: 'log', tag, msg }); } };
  mcu.loadBootrom(bootrom32);
  mcu.flash.set(flash);
  if (keep) {                               // a watchdog reset keeps these, a power cut does not
    const wd = mcu.peripherals[0x40058];
    wd.scratchData.set(keep.scratch);
    wd.reason = keep.reason;
  }
  patchUart(mcu.uart[0]);
  patchUart(mcu.uart[1]);
  mcu.uart[0].onByte = (b) => {
    if (!uartTx.length && !board.firstTx) {
      board.firstTx = true;
      event({ ev: 'uart_first', boot: board.boots });
    }
    uartTx.push(b);
  };
  mcu.uart[1].onByte = () => {};
  const wd = mcu.peripherals[0x40058];
  wd.onWatchdogTrigger = () => {
    wd.alarm.enable = false;                // rp2040js would re-fire the expired alarm forever
    wd.timer.enable = false;
    pending = 'watchdog';
  };
  mcu.adc.onADCRead = (ch) => {
    mcu.adc.currentChannel = ch;
    mcu.adc.channelValues[ch] = adcValues[ch];
    mcu.adc.sampleAlarm.schedule(mcu.adc.sampleTime * 1000);
  };
  for (const pin of watched) watchPin(mcu, pin);
  for (let pin = 0; pin < 30; pin++) {
    mcu.gpio[pin].addListener(() => { if (board.mcu === mcu) applyPin(pin); });
  }
  const cdc = new USBCDC(mcu.usbCtrl);
  cdc.onDeviceConnected = () => event({ ev: 'usb', connected: true });
  cdc.onSerialData = (data) => send('u', data);
  if (board.mcu) board.cyclesBefore += board.mcu.core.cycles;
  Object.assign(board, { mcu, clock, cdc, on: true, firstTx: false, bootNs: 0 });
  board.boots += 1;
  mcu.core.PC = FLASH_BASE;                 // as the notes: start at the image (boot2 first)
  uartIn = []; uartAlarm = null; usbIn = [];
  wallStart = performance.now(); nsStart = 0;
  for (let pin = 0; pin < 30; pin++) applyPin(pin);
  event({ ev: 'boot', n: board.boots, cause });
}

function watchPin(mcu, pin) {
  let last = null;
  mcu.gpio[pin].addListener(() => {
    const p = mcu.gpio[pin];
    const v = p.outputEnable ? (p.outputValue ? 1 : 0) : null;
    if (v !== last) { last = v; event({ ev: 'pin', pin, value: v }); }
  });
}

function flashCall() {
  const { core } = board.mcu;
  const r = core.registers;
  const pc = core.PC & ~1;
  if (pc === ROM_ERASE) {
    const addr = r[0] >>> 0, count = r[1] >>> 0;
    if (addr + count <= FLASH_BYTES) {
      board.mcu.flash.fill(0xff, addr, addr + count);
      flash.fill(0xff, addr, addr + count);
    }
    board.flashOps.erase += 1; board.flashOps.erase_bytes += count;
  } else if (pc === ROM_PROGRAM) {
    const addr = r[0] >>> 0, src = r[1] >>> 0, count = r[2] >>> 0;
    for (let i = 0; i < count && addr + i < FLASH_BYTES; i++) {
      const v = board.mcu.flash[addr + i] & board.mcu.readUint8(src + i);
      board.mcu.flash[addr + i] = v;
      flash[addr + i] = v;
    }
    board.flashOps.program += 1; board.flashOps.program_bytes += count;
  } else {
    return false;
  }
  core.BXWritePC(core.LR);
  core.cycles += 64;                        // the call itself; the erase time is not modelled
  return true;
}

function run() {
  if (!board.on) return;
  // hold emulated time to wall time x speed: the host's gateway runs on wall time
  const ahead = (board.clock.nanos - nsStart) / 1e6 - (performance.now() - wallStart) * SPEED;
  if (ahead > 5) { setTimeout(run, Math.min(ahead / SPEED, 50)); return; }
  const { mcu, clock } = board;
  const { core } = mcu;
  const cdc = board.cdc;
  while (usbIn.length && !cdc.txFIFO.full && cdc.initialized) cdc.sendSerialByte(usbIn.shift());
  for (let i = 0; i < CHUNK; i++) {
    if (cutAfter >= 0 && cutAfter-- === 0) { cutAfter = -1; pending = 'cut'; }
    if (pending) break;
    if (core.waiting) {
      const jump = clock.nanosToNextAlarm;
      if (jump <= 0) { clock.tick(0); continue; }
      clock.tick(Math.min(jump, 1e6));      // at most 1 ms at a time: the host may speak
      if ((clock.nanos - nsStart) / 1e6 > (performance.now() - wallStart) * SPEED) break;
      continue;
    }
    const pc = core.PC & ~1;
    if ((pc === ROM_ERASE || pc === ROM_PROGRAM) && flashCall()) continue;
    const before = core.cycles;
    core.executeInstruction();
    clock.tick((core.cycles - before) * CYCLE_NS);
  }
  if (uartTx.length) { send('a', uartTx); uartTx = []; }
  if (pending === 'watchdog') {
    pending = null;
    const wd = mcu.peripherals[0x40058];
    powerOn('watchdog', { scratch: wd.scratchData.slice(), reason: wd.reason });
  } else if (pending === 'cut') {
    pending = null;
    board.on = false;
    if (board.mcu) { board.cyclesBefore += board.mcu.core.cycles; }
    board.mcu = null;
    event({ ev: 'off' });
    return;
  }
  setImmediate(run);
}

// ------------------------------------------------------------------- commands
function command(cmd) {
  const reply = { ev: 'reply', id: cmd.id };
  switch (cmd.op) {
    case 'pin':
      if (cmd.value === null || cmd.value === undefined) drive.delete(cmd.pin);
      else drive.set(cmd.pin, cmd.value ? 1 : 0);
      if (board.on) applyPin(cmd.pin);
      break;
    case 'adc': {                            // channel 0-3 = GP26-29, 4 = temperature sensor
      const code = cmd.mv !== undefined ? Math.round(cmd.mv / 3300 * 4095) : cmd.value;
      adcValues[cmd.ch] = Math.max(0, Math.min(4095, code));
      reply.code = adcValues[cmd.ch];
      break;
    }
    case 'watch':
      for (const pin of cmd.pins) {
        if (!watched.has(pin)) { watched.add(pin); if (board.on) watchPin(board.mcu, pin); }
      }
      break;
    case 'read_pin': {
      const p = board.on ? board.mcu.gpio[cmd.pin] : null;
      reply.value = p && p.outputEnable ? (p.outputValue ? 1 : 0) : null;
      break;
    }
    case 'cut':                              // stop at a random instruction among the next `within`
      cutAfter = Math.floor(Math.random() * (cmd.within || 1)) ;
      break;
    case 'power_on':
      if (!board.on) { powerOn('power', null); setImmediate(run); }
      break;
    case 'save':
      fs.writeFileSync(cmd.path, flash);
      break;
    case 'stats':
      Object.assign(reply, { boots: board.boots, on: board.on, flash_ops: board.flashOps });
      break;
    case 'quit':
      event(reply);
      process.exit(0);
    default:
      reply.error = `unknown op ${cmd.op}`;
  }
  event(reply);
}

let inbuf = Buffer.alloc(0);
process.stdin.on('data', (chunk) => {
  inbuf = Buffer.concat([inbuf, chunk]);
  while (inbuf.length >= 5) {
    const n = inbuf.readUInt32LE(1);
    if (inbuf.length < 5 + n) break;
    const kind = String.fromCharCode(inbuf[0]);
    const payload = inbuf.subarray(5, 5 + n);
    inbuf = inbuf.subarray(5 + n);
    if (kind === 'u') usbIn.push(...payload);
    else if (kind === 'a') { uartIn.push(...payload); if (board.on) scheduleUart(); }
    else if (kind === 'c') command(JSON.parse(payload.toString()));
  }
});
process.stdin.on('end', () => process.exit(0));

powerOn('power', null);
setImmediate(run);
