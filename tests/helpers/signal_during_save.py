"""Run train.py (its arguments follow) with torch.save wrapped so that the first checkpoint write
sends this process the signal named by $SAVE_SIGNAL (SIGINT or SIGTERM) after its first bytes:
the signal arrives while a save is half done. A test helper; nothing in the product knows of it."""
import os
import runpy
import signal
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SIGNAL = getattr(signal, os.environ['SAVE_SIGNAL'])
real_save = torch.save
sent = []


class SignallingFile:
    def __init__(self, file):
        self.file = file

    def write(self, data):
        written = self.file.write(data)
        if not sent:
            sent.append(True)
            os.kill(os.getpid(), SIGNAL)
        return written

    def __getattr__(self, name):
        return getattr(self.file, name)


def save(obj, f, *args, **kwargs):
    return real_save(obj, SignallingFile(f), *args, **kwargs)


torch.save = save
sys.path.insert(0, ROOT)
sys.argv = [os.path.join(ROOT, 'train.py'), *sys.argv[1:]]
runpy.run_path(sys.argv[0], run_name='__main__')
