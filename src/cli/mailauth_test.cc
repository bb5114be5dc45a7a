// mailauth-test: testsaslauthd's twin, and mailauth's load generator.
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <iostream>
#include <memory>

#include "src/cli/args.h"
#include "src/cli/bench.h"
#include "src/cli/dovecot_client.h"
#include "src/cli/mux_client.h"
#include "src/cli/control_client.h"
#include "src/util/secret.h"
#include "version.h"

namespace {

constexpr const char* kHelp = R"(Usage:
  mailauth-test -u USER [-p PASS] [-r REALM] [-s SERVICE] [-f SOCKET] [-R N]
  mailauth-test --dovecot [-f SOCKET] [--mech MECH] [--rip ADDR] -u USER [-p PASS]
  mailauth-test [--dovecot] --bench [--users FILE] [--count N] [--duration S]
                [--concurrency C] [--wrong FRACTION] [--persistent] [--json]
  mailauth-test --control SOCKET stats | flush [USER] | reload

Ask an authentication daemon whether USER's password is right: over the
saslauthd "mux" protocol, exactly as testsaslauthd does (mailauthd and
saslauthd both answer it), or with --dovecot over Dovecot's auth client
protocol, as Postfix's smtpd_sasl_type = dovecot does (mailauthd and
Dovecot's auth service both answer it).

Options:
  -u USER           user name (sent as is; realm splitting is the client's job)
  -p PASS           password.  Without -p the password is read from the
                    terminal without echo, or one line from stdin when stdin
                    is not a terminal.  Prefer that: -p shows in `ps`.
  --password-stdin  read the password from stdin even on a terminal
  -r REALM          realm field [default: empty]
  -s SERVICE        service field [default: smtp]
  -f SOCKET         mux socket [default: /var/run/saslauthd/mux]; with
                    --dovecot [default: /var/spool/postfix/private/auth]
  --dovecot         use Dovecot's auth client protocol
  --mech MECH       with --dovecot: PLAIN (default), LOGIN, CRAM-MD5,
                    SCRAM-SHA-1, SCRAM-SHA-256
  --rip ADDR        with --dovecot: the client address sent as rip=
  -R N              ask N times, as testsaslauthd -R (lines "0: …", "1: …")
  --timeout S       seconds to wait for the answer [default: 30]
  --help, --version

Output and exit status (as testsaslauthd, plus distinct codes):
  0: OK "Success."                  exit 0   the password is right
  0: NO "authentication failed"     exit 1   wrong password, unknown user, …
  (reason on stderr)                exit 3   no answer: no socket, connection
                                             closed without a reply or FAIL with
                                             code=temp_fail (the daemon's temporary
                                             failure), timeout
                                    exit 2   usage error

Control socket (--control SOCKET, [daemon] control_socket; usually root only):
  stats             counters, latency histogram, cache hit rate, queue depth
                    (Prometheus text format)
  flush [USER]      forget USER's cached credentials, or all
  reload            like SIGHUP; prints the error if the new config is bad
  Exit status 0, 1 if the daemon answered ERROR, 3 if it could not be reached.

Benchmark (--bench):
  Runs C concurrent clients in a closed loop and prints auth/s, the counts of
  OK / NO / temporary failures / errors, latency p50/p90/p99/max and its own
  CPU time per request.
  --users FILE      user:password lines, drawn at random [default: -u/-p]
  --count N         stop after N requests
  --duration S      stop after S seconds [default without --count: 1000 requests]
  --concurrency C   clients in parallel [default: 1]
  --wrong F         fraction (0..1) of requests sent with a wrong password
  --persistent      with --dovecot: each client keeps one connection, as
                    Postfix's smtpd does (default: a new connection each time)
  --json            one JSON object: auth_per_s, ok, no, tempfail, errors,
                    p50_ms, p90_ms, p99_ms, max_ms, requests, seconds,
                    client_cpu_s and client_cpu_us_per_req (this client's
                    own CPU time, user + system, all threads: a load
                    generator must cost less than the server it measures)
)";

}  // namespace

int main(int argc, char** argv) {
  using namespace mailauth::cli;
  Args args(argc, argv);
  std::string user, realm, service = "smtp", socket, users_file, mech = "PLAIN", rip;
  std::string password;
  bool have_password = false, password_stdin = false, bench = false, dovecot = false,
       persistent = false;
  std::string control_socket;
  std::vector<std::string> control_words;
  long long timeout_s = 30;
  long long repeat = 1;
  BenchOptions bopt;
  while (!args.done()) {
    const std::string a = args.next();
    args.help_or_version(a, kHelp);
    if (a == "-u") {
      user = args.value(a);
    } else if (a == "-p") {
      password = args.value(a);
      have_password = true;
    } else if (a == "-r") {
      realm = args.value(a);
    } else if (a == "-s") {
      service = args.value(a);
    } else if (a == "-f") {
      socket = args.value(a);
    } else if (a == "--password-stdin") {
      password_stdin = true;
    } else if (a == "-R") {
      repeat = args.int_value(a, 1, 1'000'000);
    } else if (a == "--timeout") {
      timeout_s = args.int_value(a, 1, 3600);
    } else if (a == "--bench") {
      bench = true;
    } else if (a == "--users") {
      users_file = args.value(a);
    } else if (a == "--count") {
      bopt.count = args.int_value(a, 1, 1'000'000'000);
    } else if (a == "--duration") {
      bopt.duration = args.double_value(a, 0.001, 86400);
    } else if (a == "--concurrency") {
      bopt.concurrency = static_cast<int>(args.int_value(a, 1, 4096));
    } else if (a == "--wrong") {
      bopt.wrong = args.double_value(a, 0, 1);
    } else if (a == "--json") {
      bopt.json = true;
    } else if (a == "--dovecot") {
      dovecot = true;
    } else if (a == "--mech") {
      mech = args.value(a);
      for (char& ch : mech) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
      if (mech != "PLAIN" && mech != "LOGIN" && mech != "CRAM-MD5" && mech != "SCRAM-SHA-1" &&
          mech != "SCRAM-SHA-256")
        args.usage_error("unknown mechanism '" + mech + "' for --mech");
    } else if (a == "--rip") {
      rip = args.value(a);
    } else if (a == "--persistent") {
      persistent = true;
    } else if (a == "--control") {
      control_socket = args.value(a);
      control_words = args.rest();
    } else {
      args.usage_error("unknown option '" + a + "'");
    }
  }
  const auto timeout = std::chrono::seconds(timeout_s);
  if (!control_socket.empty()) {
    if (control_words.empty()) args.usage_error("--control needs a command: stats, flush [USER], reload");
    std::string command;
    for (const auto& w : control_words) command += (command.empty() ? "" : " ") + w;
    std::string reply, error;
    if (!control_request(control_socket, command, timeout, &reply, &error)) {
      std::cerr << args.program() << ": " << error << "\n";
      return 3;
    }
    std::cout << reply;
    return reply.rfind("ERROR", 0) == 0 ? 1 : 0;
  }
  if (socket.empty())
    socket = dovecot ? "/var/spool/postfix/private/auth" : "/var/run/saslauthd/mux";
  if (!dovecot && (mech != "PLAIN" || !rip.empty() || persistent))
    args.usage_error("--mech, --rip and --persistent go with --dovecot");

  if (bench) {
    if (!users_file.empty()) {
      std::string error;
      if (!load_bench_users(users_file, &bopt.users, &error)) {
        std::cerr << args.program() << ": " << error << "\n";
        return 2;
      }
    } else {
      if (user.empty() || !have_password)
        args.usage_error("--bench needs --users FILE, or -u USER and -p PASS");
      bopt.users.emplace_back(user, password);
    }
    if (dovecot) {
      return run_bench(bopt, [&]() -> BenchClient {
        auto client = std::make_shared<DovecotClient>(timeout);
        return [&, client](std::string_view u, std::string_view p) mutable {
          if (!persistent || !client->connected()) {
            client = std::make_shared<DovecotClient>(timeout);
            std::string error;
            if (!client->connect(socket, &error)) return BenchOutcome::Error;
          }
          DovecotAnswer r = client->authenticate(mech, u, p, service, rip);
          switch (r.kind) {
            case DovecotAnswer::Ok: return BenchOutcome::Ok;
            case DovecotAnswer::No: return BenchOutcome::No;
            case DovecotAnswer::TempFail:
            case DovecotAnswer::NoReply: return BenchOutcome::TempFail;
            case DovecotAnswer::Error: return BenchOutcome::Error;
          }
          return BenchOutcome::Error;
        };
      });
    }
    return run_bench(bopt, [&]() -> BenchClient {
      return [&](std::string_view u, std::string_view p) {
        MuxAnswer r = mux_authenticate(socket, u, p, service, realm, timeout);
        switch (r.kind) {
          case MuxAnswer::Ok: return BenchOutcome::Ok;
          case MuxAnswer::No: return BenchOutcome::No;
          case MuxAnswer::NoReply: return BenchOutcome::TempFail;
          case MuxAnswer::Error: return BenchOutcome::Error;
        }
        return BenchOutcome::Error;
      };
    });
  }

  if (user.empty()) args.usage_error("-u USER is required");
  if (!have_password) {
    std::string error;
    if (!read_password("Password: ", false, password_stdin, &password, &error)) {
      std::cerr << args.program() << ": " << error << "\n";
      return 2;
    }
  }
  if (dovecot) {
    DovecotClient client(timeout);
    std::string error;
    if (!client.connect(socket, &error)) {
      mailauth::wipe(password.data(), password.size());
      std::cerr << args.program() << ": " << error << "\n";
      return 3;
    }
    DovecotAnswer r = client.authenticate(mech, user, password, service, rip);
    mailauth::wipe(password.data(), password.size());
    switch (r.kind) {
      case DovecotAnswer::Ok: std::cout << "0: OK \"Success.\"\n"; return 0;
      case DovecotAnswer::No: std::cout << "0: NO \"authentication failed\"\n"; return 1;
      case DovecotAnswer::TempFail:
      case DovecotAnswer::NoReply:
      case DovecotAnswer::Error: std::cerr << args.program() << ": " << r.error << "\n"; return 3;
    }
    return 3;
  }
  int status = 0;
  for (long long i = 0; i < repeat; ++i) {
    MuxAnswer r = mux_authenticate(socket, user, password, service, realm, timeout);
    switch (r.kind) {
      case MuxAnswer::Ok: std::cout << i << ": OK \"Success.\"\n"; break;
      case MuxAnswer::No:
        std::cout << i << ": NO \"authentication failed\"\n";
        status = std::max(status, 1);
        break;
      case MuxAnswer::NoReply:
      case MuxAnswer::Error:
        std::cerr << args.program() << ": " << r.error << "\n";
        status = 3;
        break;
    }
  }
  mailauth::wipe(password.data(), password.size());
  return status;
}
