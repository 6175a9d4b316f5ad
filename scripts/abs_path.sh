# Sourced by the scripts in scripts/: make caller-given paths absolute BEFORE a script cd's elsewhere
# (a relative interpreter path such as .venv/bin/python breaks as soon as a script changes directory).

# abs_path PATH: PATH made absolute against the current directory. Pure string operation: the path need not
# exist yet (a cache directory under a fresh HOME), and symlinks are kept (a venv's python is a symlink;
# resolving it would leave the venv).
abs_path() {
  case "$1" in
    /*) printf '%s\n' "$1" ;;
    *) printf '%s\n' "$PWD/${1#./}" ;;
  esac
}

# abs_python PATH_OR_NAME: absolute path of an interpreter; a bare name (python3) is looked up on PATH.
abs_python() {
  case "$1" in
    */*) abs_path "$1" ;;
    *) command -v -- "$1" || { echo "error: interpreter '$1' not found on PATH" >&2; return 1; } ;;
  esac
}
