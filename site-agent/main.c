/* nirc-agent: the site agent, one beside each PBX.
 *
 *   nirc-agent [-c FILE] [-t]
 */
#include "agent.h"
#include "err.h"
#include "execwrap.h"
#include "log.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_CONF "/etc/nirc/nirc-agent.conf"

static void usage(FILE *f) {
  fprintf(f, "usage: nirc-agent [-c FILE] [-t]\n"
             "\n"
             "  -c, --config FILE   configuration file (default " DEFAULT_CONF ")\n"
             "  -t, --test          check the configuration and exit\n"
             "  -V, --version       print the version\n"
             "  -h, --help          this help\n"
             "\n"
             "Example:\n"
             "  nirc-agent -c /etc/nirc/nirc-agent.conf\n");
}

int main(int argc, char **argv) {
  /* The exec adapter's commands run through the agent's own binary. */
  if (argc >= 2 && strcmp(argv[1], EXECWRAP_FLAG) == 0) return execwrap_main(argc, argv);
  const char *path = DEFAULT_CONF;
  int test_only = 0;
  static const struct option longopts[] = {
      {"config", required_argument, NULL, 'c'},
      {"test", no_argument, NULL, 't'},
      {"version", no_argument, NULL, 'V'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  int ch;
  while ((ch = getopt_long(argc, argv, "c:tVh", longopts, NULL)) != -1) {
    switch (ch) {
    case 'c': path = optarg; break;
    case 't': test_only = 1; break;
    case 'V': printf("nirc-agent " NIRC_VERSION "\n"); return 0;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
  }
  if (optind != argc) {
    usage(stderr);
    return 2;
  }
  log_set_program("nirc-agent");
  agent_conf_t *conf = calloc(1, sizeof *conf);
  agent_t *a = calloc(1, sizeof *a);
  char err[1024];
  int rc = 1;
  uv_loop_t *loop = uv_default_loop();
  if (!conf || !a) goto out;
  if (agent_conf_load(path, conf, err, sizeof err) != 0) {
    fprintf(stderr, "nirc-agent: %s\n", err);
    goto out;
  }
  if (log_configure(conf->log.level, conf->log.groups, err, sizeof err) != 0) {
    fprintf(stderr, "nirc-agent: %s: [log] groups: %s\n", path, err);
    goto out;
  }
  signal(SIGPIPE, SIG_IGN);
  /* agent_init cleans up after itself only as far as agent_free can. */
  if (agent_init(a, loop, conf, test_only, err, sizeof err) != 0) {
    fprintf(stderr, "nirc-agent: %s\n", err);
    agent_free(a);
    goto out;
  }
  if (test_only) {
    printf("nirc-agent: configuration %s is valid (site %s)\n", path, a->slug);
  } else {
    agent_start(a);
    uv_run(loop, UV_RUN_DEFAULT);
  }
  agent_free(a);
  rc = 0;
out:
  /* Close whatever handles init created (timers), then the loop. */
  uv_run(loop, UV_RUN_NOWAIT);
  uv_loop_close(loop);
  free(a);
  free(conf);
  return rc;
}
