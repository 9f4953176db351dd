/* One definition of a site, operator or controller name (issue 16, point
 * 9): nirc_slug_valid(), which nircd and the agent apply to every
 * certificate's CN, accepts exactly the names tests/data/names.txt calls
 * good. tests/integration/test_security2.py holds deploy/pki.sh to the
 * same list, so the two cannot drift apart. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static void test_names_file(void **state) {
  (void)state;
  const char *src = getenv("NIRC_SOURCE_DIR");
  assert_non_null(src);
  char path[4096];
  snprintf(path, sizeof path, "%s/tests/data/names.txt", src);
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  char line[256];
  unsigned good = 0, bad = 0;
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = '\0';
    if (line[0] == '#' || !line[0]) continue;
    const char *name = strchr(line, ' ');
    assert_non_null(name);
    name++;
    bool want = strncmp(line, "good ", 5) == 0;
    if (nirc_slug_valid(name) != want) fail_msg("'%s': expected %s", name, want ? "good" : "bad");
    want ? good++ : bad++;
  }
  fclose(f);
  assert_true(good >= 5 && bad >= 5);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_names_file),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
