//! The model the device serves, for the app and the monitor's engine adapter alike.
//! With model updates built in (AIOT_APP_UPDATE) it is the running release's own network
//! when the release carries one (aiot_served_model(), firmware/src/update/service.c), else
//! the compiled-in model of aiot/model.h; without them, always the compiled-in model.
#ifndef AIOT_SERVED_MODEL_H
#define AIOT_SERVED_MODEL_H

#include "aiot/model.h"

#ifdef AIOT_APP_UPDATE
#include "aiot/update.h"
#define MODEL_INFO (*aiot_served_model()->info)
#define MODEL_INPUT (aiot_served_model()->input)
#define MODEL_OUTPUT (aiot_served_model()->output)
#define MODEL_INVOKE (aiot_served_model()->invoke)
#else
#define MODEL_INFO aiot_model_info
#define MODEL_INPUT aiot_model_input
#define MODEL_OUTPUT aiot_model_output
#define MODEL_INVOKE aiot_model_invoke
#endif

#endif
