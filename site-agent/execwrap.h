/* execwrap: what runs between nirc-agent and an exec adapter command, as
 *
 *   nirc-agent --exec-child AGENT_PID LOCK PROGRAM ARGS...
 *
 * The agent spawns its own binary (/proc/self/exe) in a new session
 * (setsid, through libuv), so the wrapper leads the command's process
 * group. The wrapper
 *   - asks the kernel for SIGTERM when the agent dies (PR_SET_PDEATHSIG),
 *     even by SIGKILL, and answers it by SIGKILLing its whole process
 *     group: the command and everything it started die with the agent;
 *   - if LOCK is not empty, holds an exclusive flock on that file while the
 *     command runs, waiting for it first: a command of a previous agent
 *     (killed, its group dying) and one of a restarted agent never
 *     overlap;
 *   - runs PROGRAM as its child and exits as it did (same code, or the
 *     same signal re-raised), so the agent reads the command's status.
 * Nothing else: the agent's time limit still kills the group. */
#ifndef NIRC_EXECWRAP_H
#define NIRC_EXECWRAP_H

#define EXECWRAP_FLAG "--exec-child"

/* argv[1] is EXECWRAP_FLAG. Never returns when PROGRAM ran; returns an
 * exit code (125: the wrapper itself failed, 127: PROGRAM not run). */
int execwrap_main(int argc, char **argv);

#endif
