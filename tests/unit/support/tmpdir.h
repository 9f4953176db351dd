/* tmpdir: removing a test's mkdtemp directory. */
#ifndef NIRC_TEST_TMPDIR_H
#define NIRC_TEST_TMPDIR_H

/* Removes dir and the files in it (a directory of files only: nothing
 * below a subdirectory is removed). A directory that is not there is no
 * error. */
void tmpdir_remove(const char *dir);

#endif
