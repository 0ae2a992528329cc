"""A process stops on SIGTERM whichever of its threads the kernel hands the signal to
(carpet_common.server.run_until_signal). Python runs the handler on the main thread; a main
thread asleep on a lock without a timeout is not woken by a signal another thread received, and
such a process ignored SIGTERM until it was killed. The signal is sent here to one chosen
thread that is not the main one (pthread_kill), in a process of its own."""
import subprocess
import sys
import textwrap

STOPPING = textwrap.dedent("""
    import signal, threading, time
    from carpet_common import server

    server.catch_stop_signals()
    busy = threading.Thread(target=time.sleep, args=(120,), daemon=True)  # a pool's thread
    busy.start()
    threading.Timer(0.2, signal.pthread_kill, (busy.ident, signal.SIGTERM)).start()
    server.run_until_signal([], on_stop=lambda: print("stopping", flush=True))
    print("stopped", flush=True)
""")


def test_sigterm_to_another_thread_stops_the_process():
    # 60 s is only a bound for a process that would never stop; a stopping one takes < 1 s.
    finished = subprocess.run([sys.executable, "-c", STOPPING], capture_output=True, text=True,
                              timeout=60)
    assert (finished.returncode, finished.stdout.split()) == (0, ["stopping", "stopped"]), \
        finished.stderr
