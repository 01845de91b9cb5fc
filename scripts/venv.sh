# Sourced by scripts/*.sh: create and activate .venv with rayctl installed (editable, test extras).
# Re-installs only when pyproject.toml changed since the last install.
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
source .venv/bin/activate
stamp=.venv/.rayctl-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  python -m pip install -q --upgrade pip
  python -m pip install -q -e ".[test]"
  touch "$stamp"
fi
