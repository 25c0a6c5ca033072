
// ---- decolle_brian (backends/served.py): the binary as a fork server ----------------------------------------
// `main --decolle-serve COMMANDS REPLIES PENDING LOCK` forks one child per run. Each child is the binary as a fresh
// process runs it: Brian's main above, from its first line, in a copy of a process that has run nothing. Holding
// the build folder's LOCK shared (as a run does: no build rewrites the static arrays meanwhile), it does everything
// that needs no argument (brian_start, synapse creation, the main lines before the run's values are set) while the
// previous run's outputs are read in Python; then it waits for its command on a pipe of its own.
// The server alone reads COMMANDS: "<bytes>\n" and then <bytes> of NUL-ended fields (the run's number, its results
// folder, the file its printing goes to, "" = the server's standard output, and its name=value arguments), and
// hands each whole to its waiting child. A waiting child that dies (killed from outside) is replaced at once, and a
// command meant for it goes to the new one: no command is ever half read by a child that then runs it. Replies on
// REPLIES: "<run> ok" from the child when its results are written; "<run> end <exit status>" from the server when
// the child given <run> has ended (a signal: minus its number); "0 lost <exit status>" for a child that ended
// before it was given a command; after an exit status there (every child would fail alike) or three signals in a
// row the server ends. The server ends when COMMANDS does, and its waiting child with it.

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static const int _DECOLLE_NO_COMMAND = 111;  // the child's exit status when its server ended before its command
static int _decolle_replies = -1;
static int _decolle_stdout = -1;  // the server's standard output
static int _decolle_given = -1;  // a child's own pipe, on which its server gives it its command
static int _decolle_pending = -1;  // what the child printed before its command
static int _decolle_lock = -1;  // the build folder's lock, held shared until the command
static std::string _decolle_run = "0";
static int _decolle_ended[2] = {-1, -1};  // the server's own pipe: a byte for every SIGCHLD
static int _decolle_commands = -1;  // the server's: closed in a child
static sigset_t _decolle_mask;  // the signal mask the server was started with: a child's, as a fresh process's
static const size_t _DECOLLE_MAX_COMMAND = 1 << 26;

static void _decolle_on_child_end(int)
{
    const int saved = errno;
    if (write(_decolle_ended[1], "c", 1) < 0)
    {
        // full: poll sees it readable anyway
    }
    errno = saved;
}

static bool _decolle_write_all(int fd, const std::string& text)
{
    const char* data = text.data();
    size_t left = text.size();
    while (left > 0)
    {
        const ssize_t written = write(fd, data, left);
        if (written < 0 && errno == EINTR)
            continue;
        if (written <= 0)
            return false;
        data += written;
        left -= (size_t)written;
    }
    return true;
}

static void _decolle_reply(const std::string& text)
{
    _decolle_write_all(_decolle_replies, _decolle_run + " " + text + "\n");  // false: nobody reads any more
}

static bool _decolle_read_exactly(int fd, char* data, size_t size)
{
    while (size > 0)
    {
        const ssize_t got = read(fd, data, size);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return false;
        data += got;
        size -= (size_t)got;
    }
    return true;
}

// one command, "<bytes>\n" and its <bytes>, from fd: the message whole (header included), or false at its end
static bool _decolle_read_message(int fd, std::string& message)
{
    message.clear();
    char c = 0;
    while (message.size() < 24 && _decolle_read_exactly(fd, &c, 1) && c != '\n')
        message.push_back(c);
    if (c != '\n')
        return false;
    const size_t size = std::strtoul(message.c_str(), nullptr, 10);
    if (size > _DECOLLE_MAX_COMMAND)
        return false;
    message.push_back('\n');
    const size_t start = message.size();
    message.resize(start + size);
    return size == 0 || _decolle_read_exactly(fd, &message[start], size);
}

static std::vector<std::string> _decolle_fields(const std::string& message)
{
    std::vector<std::string> fields;
    size_t start = message.find('\n') + 1;
    for (size_t end = message.find('\0', start); end != std::string::npos; end = message.find('\0', start))
    {
        fields.push_back(message.substr(start, end - start));
        start = end + 1;
    }
    return fields;
}

// called by Brian's main just before it sets the run's values from its arguments
static void _decolle_await_command(std::vector<std::string>& args)
{
    if (!_decolle_served)
        return;
    if (_decolle_lock >= 0)  // its static arrays are read: a build may rewrite them now
    {
        flock(_decolle_lock, LOCK_UN);
        close(_decolle_lock);
    }
    std::string message;
    if (!_decolle_read_message(_decolle_given, message))
        std::_Exit(_DECOLLE_NO_COMMAND);
    close(_decolle_given);
    const std::vector<std::string> fields = _decolle_fields(message);
    if (fields.size() < 3)
        std::_Exit(_DECOLLE_NO_COMMAND);
    _decolle_run = fields[0];
    brian::results_dir = fields[1];
    args.assign(fields.begin() + 3, fields.end());
    // what it printed so far, then the rest, goes where a fresh binary's output goes
    std::cout.flush();
    std::fflush(stdout);
    int output = _decolle_stdout;
    if (!fields[2].empty())
        output = open(fields[2].c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (output < 0 || dup2(output, 1) < 0)
    {
        std::cerr << "Cannot write the run's output to '" << fields[2] << "': " << std::strerror(errno) << std::endl;
        std::_Exit(1);
    }
    if (output != _decolle_stdout)
        close(output);
    close(_decolle_stdout);
    char buffer[4096];
    lseek(_decolle_pending, 0, SEEK_SET);
    for (ssize_t got; (got = read(_decolle_pending, buffer, sizeof buffer)) > 0;)
        if (write(1, buffer, (size_t)got) != got)
            break;
    close(_decolle_pending);
    // from here on a SIGINT stops the run, as it stops a fresh binary's
    std::signal(SIGINT, _int_handler);
}

// a child waiting for its command on its own pipe (the server writes to *to_child); -1 if fork failed
static pid_t _decolle_fork_child(char** argv, int* to_child)
{
    int given[2];
    if (pipe(given) < 0)
        return -1;
    const pid_t server = getpid();
    std::cout.flush();
    std::fflush(stdout);
    const pid_t child = fork();
    if (child != 0)
    {
        close(given[0]);
        *to_child = given[1];
        if (child < 0)
        {
            std::cerr << "The served binary cannot fork a run: " << std::strerror(errno) << std::endl;
            close(given[1]);
            *to_child = -1;
        }
        return child;
    }
    prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlives the server
    if (getppid() != server)
        std::_Exit(_DECOLLE_NO_COMMAND);
    close(given[1]);
    close(_decolle_ended[0]);
    close(_decolle_ended[1]);
    close(_decolle_commands);
    _decolle_given = given[0];
    std::signal(SIGCHLD, SIG_DFL);  // as a fresh process has them (SIGINT: once its command came)
    std::signal(SIGPIPE, SIG_DFL);
    sigprocmask(SIG_SETMASK, &_decolle_mask, nullptr);
    _decolle_pending = open(argv[4], O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (_decolle_pending < 0 || dup2(_decolle_pending, 1) < 0)
        std::_Exit(1);
    _decolle_lock = open(argv[5], O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (_decolle_lock < 0)
    {
        std::cerr << "The served binary cannot open the build folder's lock " << argv[5] << ": "
                  << std::strerror(errno) << std::endl;
        std::_Exit(1);
    }
    while (flock(_decolle_lock, LOCK_SH) < 0 && errno == EINTR)
    {
    }
    _decolle_served = true;
    char* child_argv[] = {argv[0], nullptr};
    const int status = _decolle_main(1, child_argv);
    std::cout.flush();
    std::fflush(stdout);
    if (status == 0)
        _decolle_reply("ok");  // its results are written: Python reads them while this process ends
    close(_decolle_replies);
    std::exit(status);
}

// what a child printed before its command, into the run's output (""= the server's standard output)
static void _decolle_pass_on_pending(const char* pending, const std::string& output)
{
    const int from = open(pending, O_RDONLY | O_CLOEXEC);
    const int to = output.empty() ? dup(_decolle_stdout)
                                  : open(output.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    char buffer[4096];
    for (ssize_t got; from >= 0 && to >= 0 && (got = read(from, buffer, sizeof buffer)) > 0;)
        if (!_decolle_write_all(to, std::string(buffer, (size_t)got)))
            break;
    if (from >= 0)
        close(from);
    if (to >= 0)
        close(to);
}

static int _decolle_status(int status)
{
    return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

// a waiting child that ended: "0 lost <status>", and a new one; false when the server should end instead
static bool _decolle_replace(char** argv, pid_t& child, int& to_child, int status, int& signalled)
{
    if (to_child >= 0)
        close(to_child);
    to_child = -1;
    const int code = child > 0 ? _decolle_status(status) : 1;
    _decolle_run = "0";
    _decolle_reply("lost " + std::to_string(code));
    if (code >= 0 || ++signalled >= 3)
        return false;
    child = _decolle_fork_child(argv, &to_child);
    return true;
}

static int _decolle_serve(char** argv)
{
    const int commands = _decolle_commands = std::atoi(argv[2]);
    _decolle_replies = std::atoi(argv[3]);
    _decolle_stdout = dup(1);
    if (_decolle_stdout < 0 || pipe2(_decolle_ended, O_NONBLOCK | O_CLOEXEC) < 0)
        return 1;
    struct sigaction on_end = {};
    on_end.sa_handler = _decolle_on_child_end;
    on_end.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sigaction(SIGCHLD, &on_end, nullptr);
    sigset_t child_ends;
    sigemptyset(&child_ends);
    sigaddset(&child_ends, SIGCHLD);
    sigprocmask(SIG_UNBLOCK, &child_ends, &_decolle_mask);  // the starting thread's mask may block it
    std::signal(SIGINT, SIG_IGN);  // Ctrl-C is for the run in progress; the server ends when COMMANDS does
    std::signal(SIGPIPE, SIG_IGN);  // writing to a child that died, or a reply nobody reads, fails instead
    int to_child = -1;
    pid_t child = _decolle_fork_child(argv, &to_child);
    int signalled = 0;  // children that ended before their command by a signal, in a row
    int status = 0;
    std::string message;
    for (;;)
    {
        struct pollfd ready[2] = {{commands, POLLIN, 0}, {_decolle_ended[0], POLLIN, 0}};
        if (poll(ready, 2, -1) < 0)
        {
            if (errno == EINTR)
                continue;
            return 1;
        }
        if (ready[1].revents)
        {
            char drained[64];
            while (read(_decolle_ended[0], drained, sizeof drained) > 0)
            {
            }
            if (child > 0 && waitpid(child, &status, WNOHANG) == child
                && !_decolle_replace(argv, child, to_child, status, signalled))
                return 0;
        }
        if (!ready[0].revents)
            continue;
        if (!_decolle_read_message(commands, message))
            return 0;  // the waiting child ends with the server (its parent-death signal)
        const std::vector<std::string> fields = _decolle_fields(message);
        int unread = 0;
        for (;;)  // give it whole to a live child, until one has read it
        {
            if (child > 0 && waitpid(child, &status, WNOHANG) == 0)
            {
                if (_decolle_write_all(to_child, message))
                {
                    while (waitpid(child, &status, 0) < 0 && errno == EINTR)
                    {
                    }
                    // the command still in its pipe: the child ended in its set-up, before the run
                    if (ioctl(to_child, FIONREAD, &unread) != 0)
                        unread = 0;
                    if (unread == 0 || !WIFSIGNALED(status))
                        break;  // its run ended (or its set-up failed: the run's failure, every child's alike)
                }
                else
                {
                    kill(child, SIGKILL);  // it ended, or is ending, before it had the command whole
                    while (waitpid(child, &status, 0) < 0 && errno == EINTR)
                    {
                    }
                }
            }
            // killed before it read its command (from outside): the next child gets it
            if (!_decolle_replace(argv, child, to_child, status, signalled))
                return 0;
        }
        if (unread > 0 && fields.size() >= 3)  // its printing was not passed on to the run's output
            _decolle_pass_on_pending(argv[4], fields[2]);
        close(to_child);
        to_child = -1;
        _decolle_run = fields.empty() ? "0" : fields[0];
        _decolle_reply("end " + std::to_string(_decolle_status(status)));
        signalled = 0;
        child = _decolle_fork_child(argv, &to_child);
    }
}

int main(int argc, char** argv)
{
    if (argc == 6 && std::strcmp(argv[1], "--decolle-serve") == 0)
        return _decolle_serve(argv);
    return _decolle_main(argc, argv);
}
