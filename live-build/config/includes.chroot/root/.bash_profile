# tty1 belongs to the appliance; every other console is a plain root shell.
if [ "$(tty)" = /dev/tty1 ] && [ -z "${APPLIANCE_SHELL:-}" ]; then
    exec /usr/local/sbin/appliance-console
fi
[ -f ~/.bashrc ] && . ~/.bashrc
