#!/usr/bin/env python3
"""The progress display of discover, as a person sees it: one live line on
a terminal (rewritten in place with carriage returns), plain lines when
stderr is a pipe, nothing with --quiet. The terminal is a real pseudo
terminal (pty); the discovery lists a simulated pair whose every listing
takes 20 ms, so that it lasts a few seconds and the line is redrawn."""
import os
import pty
import select
import subprocess
import sys
import tempfile

TREEMIG = os.environ.get('TREEMIG', os.path.join(
    os.path.dirname(os.path.abspath(__file__)), '..', '..', 'build', 'treemig'))
SHAPE = 'sim:seed=2,depth=5,folders=6,files=4,latency=20'
PAIR = [SHAPE, SHAPE + ',world=dst']

passed = failed = 0


def check(name, cond, detail=''):
    global passed, failed
    if cond:
        passed += 1
        print('ok   %s' % name)
    else:
        failed += 1
        print('FAIL %s%s' % (name, ('\n    ' + detail) if detail else ''))


def on_pty(args):
    """Runs treemig with stdout and stderr on a new pty; returns (exit code,
    everything it wrote)."""
    master, slave = pty.openpty()
    p = subprocess.Popen([TREEMIG] + args, stdin=subprocess.DEVNULL, stdout=slave,
                         stderr=slave, close_fds=True)
    os.close(slave)
    out = b''
    while True:
        r, _, _ = select.select([master], [], [], 60)
        if not r:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the other side is closed
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return p.wait(timeout=60), out


def main():
    with tempfile.TemporaryDirectory(prefix='treemig-progress-') as tmp:
        # a terminal: the live line is redrawn with \r, and ends with \n
        db = os.path.join(tmp, 'tty.db')
        rc, out = on_pty(['discover', '--workers', '4', '--db', db] + PAIR)
        text = out.decode('utf-8', 'replace')
        redraws = text.count('\rdiscovering:')
        check('terminal: discover exits 0', rc == 0, 'exit %s, output %r' % (rc, text[-500:]))
        check('terminal: the progress line is redrawn in place (\\r) at least twice',
              redraws >= 2, 'redraws %d in %r' % (redraws, text[:800]))
        check('terminal: the last progress line says discovered and ends the line',
              '\rdiscovered: src round' in text and
              text.index('\rdiscovered:') < text.index('treemig discover: discovery is complete'),
              repr(text[-800:]))
        live = [seg for seg in text.split('\r') if seg.startswith('discovering:')]
        check('terminal: the live line shows both sides, nodes and a rate',
              live and all(' src round ' in s and ' dst round ' in s and 'nodes/s' in s
                           for s in live), repr(live[:3]))

        # a pipe: no carriage return, whole lines only
        db = os.path.join(tmp, 'pipe.db')
        cp = subprocess.run([TREEMIG, 'discover', '--workers', '4', '--db', db] + PAIR,
                            stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
        err = cp.stderr.decode('utf-8', 'replace')
        check('pipe: discover exits 0', cp.returncode == 0, err[-500:])
        check('pipe: no carriage return in the output', '\r' not in err, repr(err[:500]))
        lines = [l for l in err.split('\n') if l.startswith(('discovering:', 'discovered:'))]
        check('pipe: progress comes as whole lines, the last one "discovered:"',
              lines and lines[-1].startswith('discovered: src round'), repr(err[:800]))

        # --quiet: nothing
        db = os.path.join(tmp, 'quiet.db')
        rc, out = on_pty(['discover', '--quiet', '--workers', '4', '--db', db] + PAIR)
        text = out.decode('utf-8', 'replace')
        check('--quiet on a terminal: exit 0 and not a single progress line',
              rc == 0 and 'discovering' not in text and 'discovered:' not in text,
              'exit %s, %r' % (rc, text[:500]))

    print('%d passed, %d failed' % (passed, failed))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
