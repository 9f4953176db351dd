#include "execwrap.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

/* The agent died: take the whole group down, this process included. Only
 * async-signal-safe calls here. */
static void execwrap_on_agent_death(int sig) {
  (void)sig;
  kill(0, SIGKILL);
  _exit(137);
}

int execwrap_main(int argc, char **argv) {
  if (argc < 6) {
    fprintf(stderr, "usage: nirc-agent " EXECWRAP_FLAG " AGENT_PID LOCK PROGRAM ARGS...\n"
                    "(run by nirc-agent's exec adapter, not by hand)\n");
    return 125;
  }
  pid_t agent = (pid_t)strtol(argv[2], NULL, 10);
  const char *lock = argv[3];
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = execwrap_on_agent_death;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0) {
    fprintf(stderr, "nirc-agent " EXECWRAP_FLAG ": prctl(PR_SET_PDEATHSIG): %s\n", strerror(errno));
    return 125;
  }
  /* The agent may have died before prctl: then no signal will come. */
  if (getppid() != agent) execwrap_on_agent_death(SIGTERM);
  int fd = -1;
  if (lock[0]) {
    fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
      fprintf(stderr, "cannot open the apply lock %s: %s\n", lock, strerror(errno));
      return 125;
    }
    /* A previous agent's command still dying holds it; the agent's time
     * limit bounds the wait. */
    while (flock(fd, LOCK_EX) != 0) {
      if (errno != EINTR) {
        fprintf(stderr, "cannot take the apply lock %s: %s\n", lock, strerror(errno));
        return 125;
      }
    }
  }
  pid_t child = fork();
  if (child < 0) {
    fprintf(stderr, "cannot start %s: fork: %s\n", argv[4], strerror(errno));
    return 125;
  }
  if (child == 0) {
    signal(SIGTERM, SIG_DFL);
    execv(argv[4], argv + 4);
    fprintf(stderr, "cannot run %s: %s\n", argv[4], strerror(errno));
    _exit(127);
  }
  int st;
  while (waitpid(child, &st, 0) < 0) {
    if (errno != EINTR) return 125;
  }
  /* The lock goes with this process (close on exit). */
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  int sig = WIFSIGNALED(st) ? WTERMSIG(st) : SIGKILL;
  signal(sig, SIG_DFL);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, sig);
  sigprocmask(SIG_UNBLOCK, &set, NULL);
  raise(sig);
  return 128 + sig;
}
