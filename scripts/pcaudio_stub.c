/* A libpcaudio.so.0 without sound devices, for running espeak-ng on the GPU machine (scripts/gpu_train.sh).
 * Debian's libpcaudio0 links ALSA, PulseAudio and ~25 more libraries that the machine may lack; espeak-ng
 * writing WAV to its standard output (all the corpus does) never opens a device, so it only needs these
 * symbols to exist. Build: gcc -shared -fPIC -O2 -Wl,-soname,libpcaudio.so.0 -o libpcaudio.so.0 pcaudio_stub.c */
#include <stddef.h>
#include <stdint.h>
struct audio_object;
struct audio_object *create_audio_device_object(const char *device, const char *application_name,
                                                const char *description) { return NULL; }
int audio_object_open(struct audio_object *o, int format, uint32_t rate, uint8_t channels) { return -1; }
void audio_object_close(struct audio_object *o) {}
void audio_object_destroy(struct audio_object *o) {}
int audio_object_write(struct audio_object *o, const void *data, size_t bytes) { return -1; }
int audio_object_drain(struct audio_object *o) { return 0; }
int audio_object_flush(struct audio_object *o) { return 0; }
const char *audio_object_strerror(struct audio_object *o, int error) { return "no audio device (pcaudio stub)"; }
