// A recording relay between a TCTI and swtpm's TCP server (test-only): listens on a pair of
// local ports (data, data+1 for control, as the "swtpm:" TCTI expects), forwards to swtpm's
// ports and keeps every byte of the data channel (commands and responses), so a test can assert
// what does or does not cross the TPM "bus" in clear (what an interposer on the bus would see).
#ifndef WIMSE_TESTS_SUPPORT_BUS_RECORDER_H_
#define WIMSE_TESTS_SUPPORT_BUS_RECORDER_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "util/bytes.h"

namespace wimse::testing {

class BusRecorder {
 public:
  // Relays to swtpm at 127.0.0.1:`upstream_port` (data) and `upstream_port`+1 (control).
  explicit BusRecorder(int upstream_port) : upstream_port_(upstream_port) {
    for (int attempt = 0; attempt < 50 && port_ == 0; ++attempt) {
      int a = Listen(0);
      int p = LocalPort(a);
      int b = Listen(p + 1);
      if (b >= 0) {
        data_listener_ = a;
        ctrl_listener_ = b;
        port_ = p;
      } else {
        close(a);
      }
    }
    threads_.emplace_back([this] { Serve(data_listener_, upstream_port_, true); });
    threads_.emplace_back([this] { Serve(ctrl_listener_, upstream_port_ + 1, false); });
  }
  ~BusRecorder() {
    stop_ = true;
    for (auto& t : threads_) {
      t.join();
    }
    close(data_listener_);
    close(ctrl_listener_);
  }
  BusRecorder(const BusRecorder&) = delete;
  BusRecorder& operator=(const BusRecorder&) = delete;

  // The TCTI string that goes through the relay.
  std::string tcti() const { return "swtpm:host=127.0.0.1,port=" + std::to_string(port_); }
  // Every data-channel byte so far, both directions, in arrival order.
  Bytes captured() {
    std::lock_guard<std::mutex> lock(mu_);
    return bytes_;
  }

 private:
  static int Listen(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || listen(fd, 4) != 0) {
      close(fd);
      return -1;
    }
    return fd;
  }
  static int LocalPort(int fd) {
    sockaddr_in addr{};
    socklen_t len = sizeof(addr);
    getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    return ntohs(addr.sin_port);
  }
  void Serve(int listener, int upstream, bool record) {
    while (!stop_) {
      pollfd p{listener, POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) {
        continue;
      }
      int client = accept(listener, nullptr, nullptr);
      if (client < 0) {
        continue;
      }
      int server = socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      addr.sin_port = htons(static_cast<uint16_t>(upstream));
      if (connect(server, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
        close(client);
        close(server);
        continue;
      }
      Relay(client, server, record);
      close(client);
      close(server);
    }
  }
  void Relay(int a, int b, bool record) {
    uint8_t buf[8192];
    while (true) {
      pollfd fds[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
      int n = poll(fds, 2, 50);
      if (n < 0) {
        return;
      }
      if (n == 0) {
        if (stop_) {
          return;
        }
        continue;
      }
      for (int i = 0; i < 2; ++i) {
        if ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) {
          continue;
        }
        ssize_t got = read(fds[i].fd, buf, sizeof(buf));
        if (got <= 0) {
          return;
        }
        if (record) {
          std::lock_guard<std::mutex> lock(mu_);
          bytes_.insert(bytes_.end(), buf, buf + got);
        }
        int to = i == 0 ? b : a;
        for (ssize_t off = 0; off < got;) {
          ssize_t w = write(to, buf + off, static_cast<size_t>(got - off));
          if (w <= 0) {
            return;
          }
          off += w;
        }
      }
    }
  }

  int upstream_port_;
  int port_ = 0;
  int data_listener_ = -1;
  int ctrl_listener_ = -1;
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
  std::mutex mu_;
  Bytes bytes_;
};

inline bool Contains(const Bytes& hay, ByteView needle) {
  return std::search(hay.begin(), hay.end(), needle.begin(), needle.end()) != hay.end();
}
inline bool Contains(const Bytes& hay, std::string_view needle) {
  return std::search(hay.begin(), hay.end(), needle.begin(), needle.end()) != hay.end();
}

}  // namespace wimse::testing

#endif  // WIMSE_TESTS_SUPPORT_BUS_RECORDER_H_
