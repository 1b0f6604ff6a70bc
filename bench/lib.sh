# Shell helpers shared by the bench scripts (bash; sourced, not run).

# free_ports N: N distinct free TCP ports on 127.0.0.1.
free_ports() {
    "${PY:-python3}" - "$1" <<'PYEOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PYEOF
}

# install_missing COMMAND=PACKAGE...: installs with apt-get the package of
# each command not found (`apt-get update` once if the install fails).
# Fails, naming it, when a command is still missing.
install_missing() {
    local pair sudo="" pkgs=()
    for pair in "$@"; do
        command -v "${pair%%=*}" >/dev/null || pkgs+=("${pair#*=}")
    done
    [ ${#pkgs[@]} -eq 0 ] && return 0
    printf 'installing %s\n' "${pkgs[*]}" >&2
    [ "$(id -u)" = 0 ] || sudo=sudo
    if ! DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y "${pkgs[@]}" >/dev/null 2>&1; then
        $sudo apt-get update >/dev/null 2>&1 || true
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y "${pkgs[@]}" >/dev/null 2>&1
    fi
    for pair in "$@"; do
        command -v "${pair%%=*}" >/dev/null ||
            { printf '%s is still missing after apt-get install %s\n' "${pair%%=*}" "${pair#*=}" >&2; return 1; }
    done
}
