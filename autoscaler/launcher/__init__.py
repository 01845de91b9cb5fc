"""The cluster launcher: `rayctl up` / `down` and the commands that reach a running head.

  up.py        validate, bootstrap, find or launch the head, update it, start its services
  down.py      stop the head's services, terminate every instance (head last), wait until gone
  head.py      the launcher's view of a cluster: its head, its services, the local record
  updater.py   one node from allocated to started: file mounts, setup, start commands
  ship.py      what `up` sends the head beyond file mounts (resolved config, key, wheel)
  remote.py    exec, attach, submit, rsync, monitor on the head
  progress.py  how up / down show their steps
"""
