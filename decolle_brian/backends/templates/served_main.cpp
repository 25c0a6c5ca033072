
// ---- decolle_brian (backends/served.py): the binary as a fork server ----------------------------------------
// `main --decolle-serve COMMANDS REPLIES PENDING LOCK` forks one child per run. Each child is the binary as a fresh
// process runs it: Brian's main above, from its first line, in a copy of a process that has run nothing. Holding
// the build folder's LOCK shared (as a run does: no build rewrites the static arrays meanwhile), it does everything
// that needs no argument (brian_start, synapse creation, the main lines before the run's values are set) while the
// previous run's outputs are read in Python; then it waits for its command: the run's number, its results folder,
// the file its printing goes to ("" = the server's standard output) and its name=value arguments, as "<bytes>\n"
// and then <bytes> of NUL-ended fields on COMMANDS. Replies on REPLIES: "<run> ok" from the child when its results
// are written; "<run> end <exit status>" from the server when a child that took the command <run> has ended (a
// signal: minus its number); "0 lost <exit status>" when a child ended before taking a command: the next child
// takes that command, except after an exit status (every child would fail alike) or three signals in a row, which
// end the server. The server ends when COMMANDS does.

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static const int _DECOLLE_NO_COMMAND = 111;  // the child's exit status when COMMANDS ended before its command
static int _decolle_commands = -1;
static int _decolle_replies = -1;
static int _decolle_stdout = -1;  // the server's standard output
static int _decolle_pending = -1;  // what the child printed before its command
static int _decolle_lock = -1;  // the build folder's lock, held shared until the command
static long* _decolle_taken = nullptr;  // shared with the server: the run whose command the child took (0: none)
static std::string _decolle_run = "0";

static void _decolle_reply(const std::string& text)
{
    const std::string line = _decolle_run + " " + text + "\n";
    const char* data = line.data();
    size_t left = line.size();
    while (left > 0)
    {
        const ssize_t written = write(_decolle_replies, data, left);
        if (written < 0 && errno == EINTR)
            continue;
        if (written <= 0)
            return;  // nobody reads any more (Python ended): nothing to tell
        data += written;
        left -= (size_t)written;
    }
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

static bool _decolle_read_command(std::vector<std::string>& fields)
{
    std::string header;  // byte by byte up to its newline: nothing of a later command is read
    char c = 0;
    while (header.size() < 24 && _decolle_read_exactly(_decolle_commands, &c, 1) && c != '\n')
        header.push_back(c);
    if (c != '\n')
        return false;
    const size_t size = std::strtoul(header.c_str(), nullptr, 10);
    std::string body(size, '\0');
    if (size > 0 && !_decolle_read_exactly(_decolle_commands, &body[0], size))
        return false;
    size_t start = 0;
    for (size_t end = body.find('\0'); end != std::string::npos; end = body.find('\0', start))
    {
        fields.push_back(body.substr(start, end - start));
        start = end + 1;
    }
    return fields.size() >= 3;
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
    std::vector<std::string> fields;
    if (!_decolle_read_command(fields))
        std::_Exit(_DECOLLE_NO_COMMAND);
    close(_decolle_commands);
    _decolle_run = fields[0];
    *_decolle_taken = std::atol(fields[0].c_str());
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
    char buffer[4096];
    lseek(_decolle_pending, 0, SEEK_SET);
    for (ssize_t got; (got = read(_decolle_pending, buffer, sizeof buffer)) > 0;)
        if (write(1, buffer, (size_t)got) != got)
            break;
    // from here on a SIGINT stops the run, as it stops a fresh binary's
    std::signal(SIGINT, _int_handler);
}

static int _decolle_serve(char** argv)
{
    _decolle_commands = std::atoi(argv[2]);
    _decolle_replies = std::atoi(argv[3]);
    _decolle_stdout = dup(1);
    void* shared = mmap(nullptr, sizeof(long), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (_decolle_stdout < 0 || shared == MAP_FAILED)
        return 1;
    _decolle_taken = static_cast<long*>(shared);
    std::signal(SIGINT, SIG_IGN);  // Ctrl-C is for the run in progress; the server ends when COMMANDS does
    std::signal(SIGPIPE, SIG_IGN);  // a reply nobody reads fails instead of killing
    const pid_t server = getpid();
    int signalled = 0;  // children ended by a signal before taking a command, in a row
    for (;;)
    {
        *_decolle_taken = 0;
        std::cout.flush();
        std::fflush(stdout);
        const pid_t child = fork();
        if (child < 0)
        {
            _decolle_reply("lost 1");
            return 1;
        }
        if (child == 0)
        {
            prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlives the server
            if (getppid() != server)
                std::_Exit(_DECOLLE_NO_COMMAND);
            std::signal(SIGPIPE, SIG_DFL);  // as a fresh process has it (SIGINT: once its command came)
            _decolle_lock = open(argv[5], O_RDWR | O_CREAT | O_CLOEXEC, 0644);
            if (_decolle_lock >= 0)
                while (flock(_decolle_lock, LOCK_SH) < 0 && errno == EINTR)
                {
                }
            _decolle_pending = open(argv[4], O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
            if (_decolle_pending < 0 || dup2(_decolle_pending, 1) < 0)
                std::_Exit(1);
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
        int status = 0;
        while (waitpid(child, &status, 0) < 0 && errno == EINTR)
        {
        }
        const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
        const long taken = *_decolle_taken;
        if (taken > 0)
        {
            _decolle_run = std::to_string(taken);
            _decolle_reply("end " + std::to_string(code));
            signalled = 0;
            continue;
        }
        if (code == _DECOLLE_NO_COMMAND)
            return 0;
        _decolle_run = "0";
        _decolle_reply("lost " + std::to_string(code));
        if (code > 0 || ++signalled >= 3)
            return 0;
    }
}

int main(int argc, char** argv)
{
    if (argc == 6 && std::strcmp(argv[1], "--decolle-serve") == 0)
        return _decolle_serve(argv);
    return _decolle_main(argc, argv);
}
